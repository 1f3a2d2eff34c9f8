"""What a client sees of a graph's stream: LangGraph's chunks as runyard events.

A run streams its graph with ``subgraphs=True`` and the LangGraph modes of
:data:`MODES` (plus ``values`` and ``checkpoints``, always). A
:class:`GraphStream` turns each ``(namespace, mode, chunk)`` into the events
the client's ``stream_mode`` asked for, named and shaped as the reference
server (``langgraph dev``) sends them:

- ``values``, ``updates``, ``custom``, ``tasks``, ``checkpoints``, ``tools``:
  an event named after the mode, LangGraph's chunk as data.
- ``debug``: ``{type, timestamp, step, payload}``; a checkpoint's payload also
  names its ``checkpoint`` and ``parent_checkpoint``.
- ``messages-tuple``: event ``messages``, data ``[message chunk, metadata]``.
- ``messages``: ``messages/metadata`` (``{id: {"metadata": ...}}``, once per
  message), then ``messages/partial`` (``[the message so far]``) for each
  streamed chunk, or ``messages/complete`` (``[the message]``) for a message
  that was not streamed (one a node returned).
- ``events``: event ``events``, a LangChain ``astream_events`` (v2) event.
- ``lifecycle``: nothing (nor does the reference send anything for a graph).

A subgraph's events are named ``mode|ns1|ns2`` when the client asked for
``stream_subgraphs``, and dropped otherwise; ``messages/*`` and ``events``
keep their names, as on the reference server.

``events`` needs LangChain's ``astream_events``: :meth:`GraphStream.open`
then streams the graph through it and takes the graph's own chunks back out
of the root ``on_chain_stream`` events, so every other mode sees the very
chunks, in the very order, a plain ``astream`` gives. Without ``events`` the
graph's ``astream`` is returned as it is: nothing in between.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

from langchain_core.messages import BaseMessage, BaseMessageChunk, message_chunk_to_message

from .errors import AgentError
from .graph_values import jsonable
from .model import JSON

# runyard's stream modes -> LangGraph's (None: nothing to ask LangGraph for).
MODES: dict[str, str | None] = {
    "values": "values",
    "updates": "updates",
    "custom": "custom",
    "messages": "messages",
    "messages-tuple": "messages",
    "debug": "debug",
    "tasks": "tasks",
    "checkpoints": "checkpoints",
    "tools": "tools",
    "events": None,
    "lifecycle": None,
}
# Every run streams these: the last root values are its output, checkpoints keep its gate in step.
ALWAYS = ("values", "checkpoints")
# The modes whose chunks are logged as LangGraph gives them.
_AS_IS = frozenset({"values", "updates", "custom", "tasks", "checkpoints", "tools"})
# The tag LangSmith uses for runs nobody should see; the reference server skips their events.
_HIDDEN = "langsmith:hidden"
# What a failed task tells clients in place of its error's text, which may hold anything.
_TASK_FAILED = "the task failed; details are in the server log"

Chunk = tuple[tuple[str, ...], str, Any]
Events = list[tuple[str, JSON]]


class GraphStream:
    """One run's view of its graph's stream: what to ask LangGraph, what to log."""

    __slots__ = (
        "_as_is",
        "_debug",
        "_messages",
        "_partial",
        "_tuples",
        "events",
        "modes",
        "subgraphs",
    )

    def __init__(self, asked: list[str], *, subgraphs: bool) -> None:
        self.subgraphs = subgraphs
        wanted = [MODES[m] for m in asked if MODES.get(m)]
        self.modes = list(dict.fromkeys([*ALWAYS, *wanted]))  # what LangGraph streams
        self.events = "events" in asked
        self._as_is = _AS_IS.intersection(asked)
        self._debug = "debug" in asked
        self._tuples = "messages-tuple" in asked
        self._partial = "messages" in asked
        self._messages: dict[str, BaseMessage] = {}  # by id: each streamed message so far

    def open(self, graph: Any, payload: Any, config: dict[str, Any], **kwargs: Any) -> Any:
        """The graph's chunks as ``(namespace, mode, chunk)``; ``mode`` is ``events`` for those.

        An async iterator with ``aclose``: closing it stops the graph.
        """
        if not self.events:
            return graph.astream(payload, config, stream_mode=self.modes, subgraphs=True, **kwargs)
        events = graph.astream_events(
            payload,
            _with_run_id(config),
            version="v2",
            stream_mode=self.modes,
            subgraphs=True,
            **kwargs,
        )
        return _chunks_and_events(events)

    def shape(self, namespace: tuple[str, ...], mode: str, chunk: Any) -> Events:
        """The events one chunk makes, as ``(name, data)``; none for a mode not asked."""
        if namespace and not self.subgraphs:
            return []
        if mode in self._as_is:
            name = "|".join((mode, *namespace)) if namespace else mode
            return [(name, jsonable(_safe(mode, chunk)))]
        if mode == "messages":
            return self._messages_of(namespace, *chunk)
        if mode == "debug" and self._debug:
            name = "|".join(("debug", *namespace)) if namespace else "debug"
            return [(name, _debug(chunk))]
        if mode == "events":
            return [("events", jsonable(chunk))]
        return []

    def _messages_of(
        self, namespace: tuple[str, ...], message: BaseMessage, metadata: dict[str, Any]
    ) -> Events:
        out: Events = []
        if self._tuples:
            name = "|".join(("messages", *namespace)) if namespace else "messages"
            out.append((name, [jsonable(message), jsonable(metadata)]))
        if not self._partial:
            return out
        key = str(message.id)
        known = self._messages.get(key)
        if known is None:
            out.append(("messages/metadata", {key: {"metadata": jsonable(metadata)}}))
            so_far = message
        elif isinstance(known, BaseMessageChunk) and isinstance(message, BaseMessageChunk):
            so_far = known + message
        else:
            so_far = message  # a whole message replaces what came before it
        self._messages[key] = so_far
        streamed = isinstance(message, BaseMessageChunk)
        name = "messages/partial" if streamed else "messages/complete"
        return [*out, (name, [jsonable(message_chunk_to_message(so_far))])]


async def _chunks_and_events(events: Any) -> AsyncIterator[Chunk]:
    """``astream_events`` as chunks: the graph's own from the root's ``on_chain_stream``."""
    try:
        async for event in events:
            if event["event"] == "on_chain_stream" and not event["parent_ids"]:
                yield event["data"]["chunk"]
            elif _HIDDEN not in (event.get("tags") or ()):
                yield (), "events", event
    finally:
        await events.aclose()


def _with_run_id(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` naming the graph's root run after runyard's run, as the reference does."""
    run_id = config.get("configurable", {}).get("run_id")
    try:
        return {**config, "run_id": uuid.UUID(str(run_id))}
    except ValueError:
        return config


def _debug(chunk: dict[str, Any]) -> JSON:
    """A debug chunk as the reference sends it: a checkpoint also names its checkpoints."""
    payload = chunk.get("payload")
    if not isinstance(payload, dict):
        return jsonable(chunk)
    if chunk.get("type") != "checkpoint":
        return jsonable({**chunk, "payload": _safe_task(payload)})
    payload = {
        **payload,
        "checkpoint": _checkpoint_ref(payload.get("config")),
        "parent_checkpoint": _checkpoint_ref(payload.get("parent_config")),
        "tasks": [_task_ref(t) for t in payload.get("tasks") or ()],
    }
    return jsonable({**chunk, "payload": payload})


def _checkpoint_ref(config: Any) -> dict[str, Any] | None:
    """The ``{checkpoint_id, thread_id, checkpoint_ns, checkpoint_map}`` of a config."""
    configurable = (config or {}).get("configurable") or {}
    if not configurable.get("thread_id") or not configurable.get("checkpoint_id"):
        return None
    ref = {k: configurable[k] for k in ("checkpoint_id", "thread_id")}
    if "checkpoint_ns" in configurable:
        ref["checkpoint_ns"] = configurable["checkpoint_ns"] or ""
    if "checkpoint_map" in configurable:
        ref["checkpoint_map"] = configurable["checkpoint_map"]
    return ref


def _task_ref(task: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint's task; a subgraph's state (a config) becomes its ``checkpoint``."""
    task = _safe_task(task)
    state = task.get("state")
    if not isinstance(state, dict) or not state.get("configurable"):
        return task
    rest = {k: v for k, v in task.items() if k != "state"}
    return {**rest, "checkpoint": state["configurable"]}


def _safe(mode: str, chunk: Any) -> Any:
    """A chunk with its tasks' errors safe to show."""
    if mode == "tasks" and isinstance(chunk, dict):
        return _safe_task(chunk)
    if mode == "checkpoints" and isinstance(chunk, dict) and chunk.get("tasks"):
        return {**chunk, "tasks": [_safe_task(t) for t in chunk["tasks"]]}
    return chunk


def _safe_task(task: dict[str, Any]) -> dict[str, Any]:
    """A task whose error is ``{error, message}``: its type, never its text."""
    error = task.get("error")
    if not isinstance(error, BaseException):
        return task
    message = error.message if isinstance(error, AgentError) else _TASK_FAILED
    return {**task, "error": {"error": type(error).__name__, "message": message}}
