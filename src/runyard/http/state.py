"""A thread's state and history: read, at a checkpoint, updated, forked.

A graph's thread answers LangGraph's ``ThreadState`` from its checkpoints
(``supervisor.states``); a thread without checkpoints answers one state, the
output of its last successful run. An update waits for no run: while one is
pending or running on the thread it is refused (409), as LangGraph does.
The routes join the threads blueprint (:func:`register`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from quart import Response, jsonify, request

from ..errors import Invalid
from ..model import JSON, Thread
from ..thread_state import NEWEST, CheckpointRef
from . import schema
from .context import body, owner, supervisor
from .openapi import Routes
from .render import thread_state_json


def register(route: Routes) -> None:
    """Add the state and history routes to the threads blueprint."""
    route("/threads/<thread_id>/state", "GET", summary="The thread's state")(get_state)
    route("/threads/<thread_id>/state", "POST", summary="Update the thread's state, or fork it")(
        update_state
    )
    route("/threads/<thread_id>/state/<checkpoint_id>", "GET", summary="The state at a checkpoint")(
        get_state_at
    )
    route("/threads/<thread_id>/state/checkpoint", "POST", summary="The state at a checkpoint")(
        post_state_at
    )
    route("/threads/<thread_id>/history", "GET", "POST", summary="Past states, newest first")(
        history
    )


async def get_state(thread_id: str) -> Response:
    subgraphs = schema.flag(request.args.get("subgraphs"), "subgraphs")
    return await _state(thread_id, NEWEST, subgraphs)


async def get_state_at(thread_id: str, checkpoint_id: str) -> Response:
    subgraphs = schema.flag(request.args.get("subgraphs"), "subgraphs")
    return await _state(thread_id, CheckpointRef(checkpoint_id), subgraphs)


async def post_state_at(thread_id: str) -> Response:
    b = schema.body_object(await body())
    if b.get("checkpoint") is None:
        raise Invalid("field 'checkpoint' is required")
    at = checkpoint_ref(b.get("checkpoint"), "checkpoint")
    return await _state(thread_id, at, schema.field(b, "subgraphs", bool, False))


async def _state(thread_id: str, at: CheckpointRef, subgraphs: bool) -> Response:
    sup = supervisor()
    thread = await sup.threads.get(thread_id, owner=owner())
    found = await sup.states.get(thread, at, subgraphs=subgraphs)
    return jsonify(found if found is not None else thread_state_json(thread))


async def update_state(thread_id: str) -> Response:
    b = schema.body_object(await body())
    at = checkpoint_ref(b.get("checkpoint") or {}, "checkpoint")
    chosen = schema.field(b, "checkpoint_id", str, "")  # LangGraph's older field
    if chosen and at.checkpoint_id is None:
        at = CheckpointRef(chosen, at.checkpoint_ns, at.checkpoint_map)
    as_node = schema.field(b, "as_node", str, "") or None
    sup = supervisor()
    await sup.threads.get(thread_id, owner=owner())  # a stranger learns nothing, busy or not
    async with sup.threads.quiet(thread_id):
        thread = await sup.threads.get(thread_id, owner=owner())
        answer = await sup.states.update(thread, b.get("values"), as_node=as_node, at=at)
    return jsonify(answer)


async def history(thread_id: str) -> Response:
    """``GET`` takes ``limit`` and ``before`` from the query; ``POST`` from the body, with
    ``metadata`` (a filter) and ``checkpoint`` (a namespace, or where to start)."""
    b: Mapping[str, Any] = (
        request.args if request.method == "GET" else schema.body_object(await body())
    )
    limit, _ = schema.paging(b)
    before = _before(b.get("before"))
    metadata = schema.field(b, "metadata", dict, {}) if request.method == "POST" else {}
    at = checkpoint_ref(b.get("checkpoint") or {}, "checkpoint")
    sup = supervisor()
    thread = await sup.threads.get(thread_id, owner=owner())
    states = await sup.states.history(thread, limit=limit, before=before, metadata=metadata, at=at)
    return jsonify(states if states is not None else _no_history(thread))


def _no_history(thread: Thread) -> list[JSON]:
    """A thread without checkpoints has one state, once a run has given it values."""
    return [] if thread.values is None else [thread_state_json(thread)]


def checkpoint_ref(value: JSON, name: str) -> CheckpointRef:
    """A checkpoint object of a body (``checkpoint_id``, ``checkpoint_ns``, ``checkpoint_map``)."""
    if not isinstance(value, dict):
        raise Invalid(f"field '{name}' must be an object")
    checkpoint_id = schema.field(value, "checkpoint_id", str, "")
    return CheckpointRef(
        checkpoint_id or None,
        schema.field(value, "checkpoint_ns", str, ""),
        schema.field(value, "checkpoint_map", dict, None),
    )


def _before(value: JSON) -> str | None:
    """``before``: a checkpoint id, or a checkpoint object holding one."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        return value
    ref = checkpoint_ref(value, "before")
    if ref.checkpoint_id is None:
        raise Invalid("field 'before' must name a checkpoint_id")
    return ref.checkpoint_id
