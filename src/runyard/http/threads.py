"""Threads: create, read, search, count, patch, copy, delete; their state in :mod:`.state`.

Deleting a thread cancels its runs and waits for their final states before
the thread goes; a client that disconnects meanwhile cancels only the wait,
never a run's cleanup (see :meth:`~runyard.supervisor.Supervisor.delete_thread`).
"""

from __future__ import annotations

from quart import Blueprint, Response, jsonify, request

from ..errors import Conflict
from . import shapes, state
from .bodies import ThreadCount, ThreadCreate, ThreadPatch, ThreadSearch
from .context import owner, settings, supervisor
from .render import thread_json
from .routes import NO_BODY, Header, Json, Routes

threads = Blueprint("threads", __name__)
route = Routes(threads)
state.register(route)


# PATCH's "Prefer: return=minimal" asks for a 204 without the thread.
MINIMAL = "return=minimal"


@route(
    "/threads",
    "POST",
    summary="Create a thread",
    body=ThreadCreate,
    answers={200: shapes.Thread},
    raises=(Conflict,),
)
async def create(body: ThreadCreate) -> Response:
    thread = await supervisor().threads.create(
        thread_id=body.thread_id,
        metadata=body.metadata,
        if_exists=body.if_exists,
        owner=owner(),
    )
    return jsonify(thread_json(thread))


@route(
    "/threads/search",
    "POST",
    summary="Search threads by metadata, values and status",
    body=ThreadSearch,
    answers={200: list[shapes.Thread]},
)
async def search(body: ThreadSearch) -> Response:
    found = await supervisor().threads.search(
        owner=owner(),
        metadata=body.metadata,
        values=body.values,
        status=None if body.status is None else str(body.status),
        limit=body.limit,
        offset=body.offset,
    )
    return jsonify([thread_json(t) for t in found])


@route(
    "/threads/count",
    "POST",
    summary="Count threads by metadata, values and status",
    body=ThreadCount,
    answers={200: Json(int, "How many threads match")},
)
async def count(body: ThreadCount) -> Response:
    found = await supervisor().threads.count(
        owner=owner(),
        metadata=body.metadata,
        values=body.values,
        status=None if body.status is None else str(body.status),
    )
    return jsonify(found)


@route("/threads/<thread_id>", "GET", summary="Read a thread", answers={200: shapes.Thread})
async def get(thread_id: str) -> Response:
    return jsonify(thread_json(await supervisor().threads.get(thread_id, owner=owner())))


@route(
    "/threads/<thread_id>",
    "PATCH",
    summary="Merge metadata into a thread's",
    body=ThreadPatch,
    headers=(Header("Prefer", {"type": "string"}, f"{MINIMAL}: answer 204, without the thread"),),
    answers={200: shapes.Thread, 204: NO_BODY},
)
async def patch(thread_id: str, body: ThreadPatch) -> Response:
    limit = settings().max_metadata_bytes
    thread = await supervisor().threads.patch(
        thread_id, metadata=body.metadata, owner=owner(), max_metadata=limit
    )
    if request.headers.get("Prefer") == MINIMAL:
        return Response(b"", status=204)
    return jsonify(thread_json(thread))


@route(
    "/threads/<thread_id>/copy",
    "POST",
    summary="Copy a thread with its checkpoints",
    answers={200: shapes.Thread},
)
async def copy(thread_id: str) -> Response:
    return jsonify(thread_json(await supervisor().threads.copy(thread_id, owner=owner())))


@route(
    "/threads/<thread_id>",
    "DELETE",
    summary="Delete a thread (cancels its runs first)",
    answers={204: NO_BODY},
)
async def delete(thread_id: str) -> Response:
    await supervisor().threads.delete(thread_id, owner=owner())
    return Response(b"", status=204)
