"""A graph's drawing and schemas, from LangGraph's own methods (run off the trio loop).

Used by the assistants API (``/graph``, ``/schemas``, ``/subgraphs``); each
function is blocking and called through ``trio.to_thread``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from .errors import Invalid
from .model import JSON

log = logging.getLogger("runyard.assistants")

SCHEMA_PARTS = ("input_schema", "output_schema", "state_schema", "config_schema", "context_schema")


def one_node(name: str) -> JSON:
    """A plain agent drawn as LangGraph draws a one-node graph."""
    start, end = ({"id": e, "type": "schema", "data": e} for e in ("__start__", "__end__"))
    nodes = [start, {"id": name, "type": "runnable", "data": {"name": name}}, end]
    edges = [{"source": "__start__", "target": name}, {"source": name, "target": "__end__"}]
    return {"nodes": nodes, "edges": edges}


def drawing(graph: Any, config: dict[str, JSON], xray: bool | int) -> JSON:
    try:
        drawn: JSON = graph.get_graph(config, xray=xray).to_json()
    except NotImplementedError:
        raise Invalid("this graph cannot be drawn") from None
    for node in drawn.get("nodes", []):
        data = node.get("data")
        if isinstance(data, dict):
            data.pop("id", None)  # the Python class path of the node's runnable
    return drawn


def schemas(graph: Any) -> dict[str, JSON]:
    """Each schema, or None where LangGraph (or pydantic) cannot produce it."""
    makers: dict[str, Callable[[], JSON]] = {
        "input_schema": graph.get_input_jsonschema,
        "output_schema": graph.get_output_jsonschema,
        "state_schema": lambda: _state_schema(graph),
        # Since LangGraph 1.0 a graph's configurable part is its context schema.
        "config_schema": lambda: graph.get_context_jsonschema() or {},
        "context_schema": graph.get_context_jsonschema,
    }
    found: dict[str, JSON] = {}
    for part, make in makers.items():
        try:
            found[part] = make()
        except Exception as exc:
            error = type(exc).__name__
            log.warning("assistants.schema_unavailable", extra={"schema": part, "error": error})
            found[part] = None
    return found


def _state_schema(graph: Any) -> JSON:
    """The schema of the state a ``StateGraph`` was built with; None for other graphs."""
    state = getattr(getattr(graph, "builder", None), "state_schema", None)
    if state is None:
        return None
    from pydantic import BaseModel, TypeAdapter  # LangGraph's dependency, not runyard's

    if isinstance(state, type) and issubclass(state, BaseModel):
        return state.model_json_schema()
    return TypeAdapter(state).json_schema()


def subgraphs(graph: Any, namespace: str | None, recurse: bool) -> JSON:
    try:
        found = list(graph.get_subgraphs(namespace=namespace, recurse=recurse))
    except NotImplementedError:
        raise Invalid("this graph cannot list its subgraphs") from None
    return {ns: schemas(subgraph) for ns, subgraph in found}
