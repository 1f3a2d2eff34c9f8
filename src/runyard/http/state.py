"""A thread's state and history: read, at a checkpoint, updated, forked.

A graph's thread answers LangGraph's ``ThreadState`` from its checkpoints
(``supervisor.states``); a thread without checkpoints answers one state, the
output of its last successful run. An update waits for no run: while one is
pending or running on the thread it is refused (409), as LangGraph does.
The routes join the threads blueprint (:func:`register`).
"""

from __future__ import annotations

from quart import Response, jsonify

from ..errors import BadRequest, Conflict
from ..model import JSON, Thread
from ..thread_state import NEWEST, CheckpointRef
from . import shapes
from .bodies import HistoryQuery, HistorySearch, StateAt, StateQuery, StateUpdate
from .context import owner, supervisor
from .graph_options import Checkpoint
from .render import thread_state_json
from .routes import Routes

STATE = {200: shapes.ThreadState}
HISTORY = {200: list[shapes.ThreadState]}


def register(route: Routes) -> None:
    """Add the state and history routes to the threads blueprint."""
    thread = "/threads/<thread_id>"
    route(f"{thread}/state", "GET", summary="The thread's state", query=StateQuery, answers=STATE)(
        get_state
    )
    route(
        f"{thread}/state",
        "POST",
        summary="Update the thread's state, or fork it",
        body=StateUpdate,
        answers={200: shapes.StateUpdated},
        # 400: the thread has no graph; 409: a run is active; 422: the graph refused.
        raises=(BadRequest, Conflict),
    )(update_state)
    route(
        f"{thread}/state/<checkpoint_id>",
        "GET",
        summary="The state at a checkpoint",
        query=StateQuery,
        answers=STATE,
    )(get_state_at)
    route(
        f"{thread}/state/checkpoint",
        "POST",
        summary="The state at a checkpoint",
        body=StateAt,
        answers=STATE,
    )(post_state_at)
    route(
        f"{thread}/history",
        "GET",
        summary="Past states, newest first",
        query=HistoryQuery,
        answers=HISTORY,
    )(history)
    route(
        f"{thread}/history",
        "POST",
        summary="Past states, newest first, filtered",
        body=HistorySearch,
        answers=HISTORY,
    )(search_history)


async def get_state(thread_id: str, query: StateQuery) -> Response:
    return await _state(thread_id, NEWEST, query.subgraphs)


async def get_state_at(thread_id: str, checkpoint_id: str, query: StateQuery) -> Response:
    return await _state(thread_id, CheckpointRef(checkpoint_id), query.subgraphs)


async def post_state_at(thread_id: str, body: StateAt) -> Response:
    return await _state(thread_id, checkpoint_ref(body.checkpoint), body.subgraphs)


async def _state(thread_id: str, at: CheckpointRef, subgraphs: bool) -> Response:
    sup = supervisor()
    thread = await sup.threads.get(thread_id, owner=owner())
    found = await sup.states.get(thread, at, subgraphs=subgraphs)
    return jsonify(found if found is not None else thread_state_json(thread))


async def update_state(thread_id: str, body: StateUpdate) -> Response:
    at = checkpoint_ref(body.checkpoint)
    if body.checkpoint_id and at.checkpoint_id is None:  # LangGraph's older field
        at = CheckpointRef(body.checkpoint_id, at.checkpoint_ns, at.checkpoint_map)
    sup = supervisor()
    await sup.threads.get(thread_id, owner=owner())  # a stranger learns nothing, busy or not
    async with sup.threads.quiet(thread_id):
        thread = await sup.threads.get(thread_id, owner=owner())
        answer = await sup.states.update(thread, body.values, as_node=body.as_node, at=at)
    return jsonify(answer)


async def history(thread_id: str, query: HistoryQuery) -> Response:
    return await _history(thread_id, query.limit, query.before, {}, NEWEST)


async def search_history(thread_id: str, body: HistorySearch) -> Response:
    """``metadata`` filters; ``checkpoint`` names a namespace, or where to start."""
    before = (
        body.before
        if isinstance(body.before, str) or body.before is None
        else (body.before.checkpoint_id)
    )
    return await _history(
        thread_id, body.limit, before, body.metadata, checkpoint_ref(body.checkpoint)
    )


async def _history(
    thread_id: str, limit: int, before: str | None, metadata: dict[str, JSON], at: CheckpointRef
) -> Response:
    sup = supervisor()
    thread = await sup.threads.get(thread_id, owner=owner())
    states = await sup.states.history(thread, limit=limit, before=before, metadata=metadata, at=at)
    return jsonify(states if states is not None else _no_history(thread))


def _no_history(thread: Thread) -> list[JSON]:
    """A thread without checkpoints has one state, once a run has given it values."""
    return [] if thread.values is None else [thread_state_json(thread)]


def checkpoint_ref(checkpoint: Checkpoint) -> CheckpointRef:
    """The engine's reference to the checkpoint a body names."""
    return CheckpointRef(
        checkpoint.checkpoint_id or None, checkpoint.checkpoint_ns, checkpoint.checkpoint_map
    )
