"""LangGraph graphs as runyard agents (the optional ``runyard[langgraph]`` extra).

A compiled graph (anything with LangGraph's ``astream``) runs on the graph
loop, a plain asyncio loop in a thread of its own (:mod:`runyard.graph_loop`).
The stream modes the client asked for map to runyard events with the names
LangGraph clients expect:

| mode asked | event logged | data |
|---|---|---|
| ``values`` | ``values`` | the state after each step |
| ``updates`` | ``updates`` | ``{node: update}`` |
| ``custom`` | ``custom`` | what the graph wrote with ``get_stream_writer()`` |
| ``messages-tuple`` | ``messages`` | ``[message chunk, metadata]`` |
| ``messages`` | ``messages/metadata``, ``/partial``, ``/complete`` | as the reference |
| ``events``, ``debug``, ``tasks``, ``checkpoints`` | the mode's name | graph_stream.py |

Runs keep their state in runyard's own store (see :mod:`runyard.graph_run`):
the last ``values`` chunk is the run's output, the saved state the thread's. A cancel
on the trio side (user, disconnect, interrupt, shutdown) cancels the graph's
asyncio task: ``asyncio.CancelledError`` reaches the running node, whose
``finally`` blocks run, and the run's final state follows runyard's rules.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

from .agents import Agent, RunContext
from .errors import AgentError
from .graph_values import jsonable

__all__ = ["graph_agent", "is_graph", "jsonable", "load_langgraph_json"]


def is_graph(target: object) -> bool:
    """Whether ``target`` looks like a compiled LangGraph graph."""
    return hasattr(target, "astream") and hasattr(target, "get_graph")


def graph_agent(name: str, graph: Any, description: str = "") -> Agent:
    """Wrap a compiled graph as an :class:`~runyard.agents.Agent` (run on the graph loop)."""

    async def run(input: Any, ctx: RunContext) -> Any:
        if ctx.host is None:  # a registry that had no graph when the server started
            raise AgentError(f"graph {name!r} was registered after the server started")
        return await ctx.host.run(graph, name, input, ctx)

    return Agent(name, run, description=description or f"LangGraph graph {name}", graph=graph)


def load_langgraph_json(path: str) -> list[Agent]:
    """The graphs of a ``langgraph.json`` (its ``graphs`` section), as agents.

    Paths in it are relative to the file; its ``dependencies`` that are local
    folders are put on ``sys.path``, as ``langgraph dev`` does.
    """
    file = Path(path).resolve()
    try:
        spec = json.loads(file.read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"langgraph_json: cannot read {path} ({exc})") from None
    graphs = spec.get("graphs")
    if not isinstance(graphs, dict) or not graphs:
        raise ValueError(f"langgraph_json: {path} has no 'graphs' section")
    for dep in spec.get("dependencies", []):
        if isinstance(dep, str) and dep.startswith("."):
            folder = str((file.parent / dep).resolve())
            if folder not in sys.path:
                sys.path.insert(0, folder)
    agents = []
    for name, target in graphs.items():
        location = target if isinstance(target, str) else target.get("path", "")
        module_ref, sep, attribute = location.partition(":")
        if not sep:
            raise ValueError(f"langgraph_json: graph {name!r} must be 'path.py:attribute'")
        graph = _load_attribute(file.parent, module_ref, attribute, name)
        agents.append(graph_agent(name, graph))
    return agents


def _load_attribute(base: Path, module_ref: str, attribute: str, name: str) -> Any:
    if not module_ref.endswith(".py") and "/" in module_ref:
        raise ValueError(
            f"langgraph_json: graph {name!r}: {module_ref} is not a Python file"
            " (runyard serves Python graphs)"
        )
    if module_ref.endswith(".py"):
        source = (base / module_ref).resolve()
        module_name = f"runyard_graph_{name}"
        spec = importlib.util.spec_from_file_location(module_name, source)
        if spec is None or spec.loader is None:
            raise ValueError(f"langgraph_json: graph {name!r}: cannot load {source}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        try:
            spec.loader.exec_module(module)
        except Exception as exc:
            raise ValueError(
                f"langgraph_json: graph {name!r}: {source} failed to import ({exc})"
            ) from None
    else:
        try:
            module = importlib.import_module(module_ref)
        except ImportError as exc:
            raise ValueError(f"langgraph_json: graph {name!r}: {exc}") from None
    target = getattr(module, attribute, None)
    if callable(target) and not is_graph(target):
        try:
            target = target()  # a factory, as langgraph.json allows
        except Exception as exc:
            raise ValueError(
                f"langgraph_json: graph {name!r}: its factory failed ({type(exc).__name__});"
                " runyard calls it once, with no arguments"
            ) from None
    if not is_graph(target):
        raise ValueError(f"langgraph_json: graph {name!r} is not a compiled LangGraph graph")
    return target
