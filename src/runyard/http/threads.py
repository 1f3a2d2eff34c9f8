"""Threads: create, read, search, delete, and the state a thread's last success left.

Deleting a thread cancels its runs and waits for their final states before
the thread goes; a client that disconnects meanwhile cancels only the wait,
never a run's cleanup (see :meth:`~runyard.supervisor.Supervisor.delete_thread`).
"""

from __future__ import annotations

from quart import Blueprint, Response, jsonify

from . import schema
from .context import body, owner, settings, supervisor
from .openapi import Routes
from .render import thread_json, thread_state_json

threads = Blueprint("threads", __name__)
route = Routes(threads)


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


@route("/threads/search", "POST", summary="Search threads by metadata and status")
async def search() -> Response:
    b = schema.body_object(await body())
    limit, offset = schema.paging(b)
    status = schema.choice(b, "status", (*schema.THREAD_STATUSES, ""), "")
    found = await supervisor().threads.search(
        owner=owner(),
        metadata=schema.field(b, "metadata", dict, {}),
        status=status or None,
        limit=limit,
        offset=offset,
    )
    return jsonify([thread_json(t) for t in found])


@route("/threads/<thread_id>", "GET", summary="Read a thread")
async def get(thread_id: str) -> Response:
    return jsonify(thread_json(await supervisor().threads.get(thread_id, owner=owner())))


@route("/threads/<thread_id>", "DELETE", summary="Delete a thread (cancels its runs first)")
async def delete(thread_id: str) -> Response:
    await supervisor().threads.delete(thread_id, owner=owner())
    return Response(b"", status=204)


@route("/threads/<thread_id>/state", "GET", summary="The output of the thread's last success")
async def state(thread_id: str) -> Response:
    thread = await supervisor().threads.get(thread_id, owner=owner())
    return jsonify(thread_state_json(thread))
