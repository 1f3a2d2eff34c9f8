"""The LangGraph fields of a run body: resume, fork, interrupt, stream subgraphs.

Each is checked here (422 naming the field, 400 for a ``command`` without a
thread to resume) and kept as sent in the run's options, which a graph run
reads (:mod:`runyard.graph_run`) and a plain runyard agent ignores.
"""

from __future__ import annotations

from collections.abc import Mapping

from ..errors import BadRequest, Invalid
from ..model import JSON
from .schema import field

DURABILITY = ("sync", "async", "exit")  # when a graph's checkpoints are saved
ON_COMPLETION = ("delete", "keep")  # what becomes of a thread-less run's thread
COMMAND_KEYS = frozenset({"resume", "update", "goto", "graph"})


def graph_options(body: Mapping[str, JSON], *, thread_id: str | None) -> dict[str, JSON]:
    """The LangGraph options of a run-create body, validated; absent ones left out."""
    options: dict[str, JSON] = {}
    command = field(body, "command", dict, None)
    if command is not None:
        if thread_id is None:
            raise BadRequest("a run with 'command' resumes a thread: start it on one")
        unknown = sorted(set(command) - COMMAND_KEYS)
        if unknown:
            raise Invalid(f"field 'command' has unknown key {unknown[0]!r}")
        _check_goto(command.get("goto"))
        options["command"] = command
    checkpoint = _checkpoint(body)
    if checkpoint is not None:
        options["checkpoint"] = checkpoint
    for name in ("interrupt_before", "interrupt_after"):
        nodes = _nodes(body.get(name), name)
        if nodes is not None:
            options[name] = nodes
    if field(body, "stream_subgraphs", bool, False):
        options["stream_subgraphs"] = True
    resume = field(body, "resume_on_restart", bool, None)
    if resume is not None:
        options["resume_on_restart"] = resume
    durability = field(body, "durability", str, None)
    if durability is not None:
        if durability not in DURABILITY:
            raise Invalid(f"field 'durability' must be one of {', '.join(DURABILITY)}")
        options["durability"] = durability
    return options


def on_completion(body: Mapping[str, JSON]) -> str:
    value = field(body, "on_completion", str, "keep")
    if value not in ON_COMPLETION:
        raise Invalid(f"field 'on_completion' must be one of {', '.join(ON_COMPLETION)}")
    return value


def _checkpoint(body: Mapping[str, JSON]) -> dict[str, JSON] | None:
    """``checkpoint`` (an object) or ``checkpoint_id`` (its id alone): where to run from."""
    checkpoint = field(body, "checkpoint", dict, None)
    checkpoint_id = field(body, "checkpoint_id", str, None)
    if checkpoint is None and checkpoint_id is None:
        return None
    found = dict(checkpoint or {})
    if checkpoint_id is not None:
        found["checkpoint_id"] = checkpoint_id
    for key in ("checkpoint_id", "checkpoint_ns"):
        if found.get(key) is not None and not isinstance(found[key], str):
            raise Invalid(f"field 'checkpoint.{key}' must be a string")
    return found


def _nodes(value: JSON, name: str) -> JSON:
    """``"*"`` or a list of node names."""
    if value is None or value == "*":
        return value
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    raise Invalid(f"field '{name}' must be '*' or a list of node names")


def _check_goto(goto: JSON) -> None:
    items = goto if isinstance(goto, list) else [goto]
    for item in items:
        if item is None or isinstance(item, str):
            continue
        if isinstance(item, dict) and isinstance(item.get("node"), str):
            continue
        raise Invalid("field 'command.goto' must be node names or {node, input} objects")
