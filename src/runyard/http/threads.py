"""Threads: create, read, search, count, patch, copy, delete; their state in :mod:`.state`.

Deleting a thread cancels its runs and waits for their final states before
the thread goes; a client that disconnects meanwhile cancels only the wait,
never a run's cleanup (see :meth:`~runyard.supervisor.Supervisor.delete_thread`).
"""

from __future__ import annotations

from quart import Blueprint, Response, jsonify, request

from ..model import JSON
from . import schema, state
from .context import body, owner, settings, supervisor
from .openapi import Routes
from .render import thread_json

threads = Blueprint("threads", __name__)
route = Routes(threads)
state.register(route)


@route("/threads", "POST", summary="Create a thread")
async def create() -> Response:
    b = schema.body_object(await body())
    chosen = schema.field(b, "thread_id", str, "")
    thread = await supervisor().threads.create(
        thread_id=schema.valid_thread_id(chosen) if chosen else None,
        metadata=schema.metadata(b, settings().max_metadata_bytes),
        if_exists=schema.choice(b, "if_exists", schema.IF_EXISTS, "raise"),
        owner=owner(),
    )
    return jsonify(thread_json(thread))


@route("/threads/search", "POST", summary="Search threads by metadata, values and status")
async def search() -> Response:
    b = schema.body_object(await body())
    limit, offset = schema.paging(b)
    found = await supervisor().threads.search(
        owner=owner(),
        metadata=schema.field(b, "metadata", dict, {}),
        values=schema.field(b, "values", dict, {}),
        status=_status(b),
        limit=limit,
        offset=offset,
    )
    return jsonify([thread_json(t) for t in found])


@route("/threads/count", "POST", summary="Count threads by metadata, values and status")
async def count() -> Response:
    b = schema.body_object(await body())
    found = await supervisor().threads.count(
        owner=owner(),
        metadata=schema.field(b, "metadata", dict, {}),
        values=schema.field(b, "values", dict, {}),
        status=_status(b),
    )
    return jsonify(found)


def _status(b: dict[str, JSON]) -> str | None:
    return schema.choice(b, "status", (*schema.THREAD_STATUSES, ""), "") or None


@route("/threads/<thread_id>", "GET", summary="Read a thread")
async def get(thread_id: str) -> Response:
    return jsonify(thread_json(await supervisor().threads.get(thread_id, owner=owner())))


@route("/threads/<thread_id>", "PATCH", summary="Merge metadata into a thread's")
async def patch(thread_id: str) -> Response:
    b = schema.body_object(await body())
    limit = settings().max_metadata_bytes
    thread = await supervisor().threads.patch(
        thread_id, metadata=schema.metadata(b, limit), owner=owner(), max_metadata=limit
    )
    if request.headers.get("Prefer") == "return=minimal":
        return Response(b"", status=204)
    return jsonify(thread_json(thread))


@route("/threads/<thread_id>/copy", "POST", summary="Copy a thread with its checkpoints")
async def copy(thread_id: str) -> Response:
    return jsonify(thread_json(await supervisor().threads.copy(thread_id, owner=owner())))


@route("/threads/<thread_id>", "DELETE", summary="Delete a thread (cancels its runs first)")
async def delete(thread_id: str) -> Response:
    await supervisor().threads.delete(thread_id, owner=owner())
    return Response(b"", status=204)
