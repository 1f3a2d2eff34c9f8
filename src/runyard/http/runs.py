"""Runs: start (background, stream, wait), list, read, join, cancel, delete.

A handler that also has a thread-less route serves both: ``thread_id`` is
None there (``defaults={"thread_id": None}``), and a run started that way gets
a new thread. A run never belongs to the request that started it: when a
client disconnects, quart-trio cancels the handler and the run goes on, unless
``on_disconnect`` is ``cancel`` (stream and wait) or ``cancel_on_disconnect``
is set (joining a stream); the run is then cancelled with reason
``disconnect`` and still persists its final state.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator

import trio
from quart import Blueprint, Response, jsonify, request

from ..errors import BadRequest, Conflict, NotFound, ShuttingDown, TooManyRequests
from ..model import CancelReason, Run
from ..supervisor import RunHandle
from . import schema, shapes
from .bodies import Cancel, Feed, JoinStream, RunCreate, RunList
from .context import owner, settings, supervisor
from .render import final_body, run_json
from .routes import EVENT_STREAM, NO_BODY, Header, Json, Media, Routes
from .sse import feed_response, run_paths, sse_response

runs = Blueprint("runs", __name__)
route = Routes(runs)

# The thread-less form of a route: the run gets (or is looked up without) a thread.
NO_THREAD = {"thread_id": None}
# Seconds between the newlines of a /wait or /join still waiting (proxies cut idle ones).
WAIT_KEEPALIVE = 5.0
# What starting a run may meet besides a bad body: no such thread or assistant, a busy
# thread under reject, a limit on active runs, a shutdown.
STARTING = (NotFound, Conflict, TooManyRequests, ShuttingDown)
# What /wait and /join answer.
FINAL = Json(
    object,
    "The run's output when it ended success; otherwise"
    ' {"__error__": {"error": ..., "message": ...}}',
)
LAST_EVENT_ID = Header(
    "Last-Event-ID",
    schema.LAST_EVENT_ID_SCHEMA,
    "replay the events after this id (-1: all of them), then go live",
    refused_with=BadRequest,
)


async def _start(
    body: RunCreate, thread_id: str | None, *, streaming: bool
) -> tuple[RunHandle, bool]:
    """Start the run; also whether it goes with the client."""
    request = body.run_request(thread_id=thread_id, owner=owner(), streaming=streaming)
    handle = await supervisor().create_run(request)
    return handle, body.on_disconnect == "cancel"


def _located(response: Response, run: Run, *, join: bool = False) -> Response:
    content_location, stream_location = run_paths(run)
    response.headers["Content-Location"] = content_location
    response.headers["Location"] = f"{content_location}/join" if join else stream_location
    return response


@route(
    "/threads/<thread_id>/runs",
    "POST",
    summary="Start a run in the background",
    body=RunCreate,
    answers={200: shapes.Run},
    raises=STARTING,
)
@route(
    "/runs",
    "POST",
    summary="Start a run on a new thread, in the background",
    defaults=NO_THREAD,
    body=RunCreate,
    answers={200: shapes.Run},
    raises=STARTING,
)
async def create(thread_id: str | None, body: RunCreate) -> Response:
    handle, _ = await _start(body, thread_id, streaming=False)
    return _located(jsonify(run_json(handle.run)), handle.run)


@route(
    "/threads/<thread_id>/runs/stream",
    "POST",
    summary="Start a run and stream it (SSE)",
    body=RunCreate,
    answers={200: EVENT_STREAM},
    raises=STARTING,
)
@route(
    "/runs/stream",
    "POST",
    summary="Start a run on a new thread and stream it (SSE)",
    defaults=NO_THREAD,
    body=RunCreate,
    answers={200: EVENT_STREAM},
    raises=STARTING,
)
async def stream(thread_id: str | None, body: RunCreate) -> Response:
    handle, cancel = await _start(body, thread_id, streaming=True)
    sup = supervisor()
    return sse_response(
        sup,
        handle.run,
        sup.subscribe(handle.run_id, limited=True),
        modes=handle.request.stream_mode,
        cancel_on_disconnect=cancel,
        heartbeat=settings().heartbeat,
    )


@route(
    "/threads/<thread_id>/runs/wait",
    "POST",
    summary="Start a run and wait for its end",
    body=RunCreate,
    answers={200: FINAL},
    raises=STARTING,
)
@route(
    "/runs/wait",
    "POST",
    summary="Start a run on a new thread and wait for its end",
    defaults=NO_THREAD,
    body=RunCreate,
    answers={200: FINAL},
    raises=STARTING,
)
async def wait(thread_id: str | None, body: RunCreate) -> Response:
    handle, cancel = await _start(body, thread_id, streaming=True)
    return await _when_done(handle.run, cancel_on_disconnect=cancel)


@route(
    "/threads/<thread_id>/runs",
    "GET",
    summary="List a thread's runs, newest first",
    query=RunList,
    answers={200: list[shapes.Run]},
)
@route(
    "/runs",
    "GET",
    summary="List runs of every thread, newest first (runyard)",
    defaults=NO_THREAD,
    query=RunList,
    answers={200: list[shapes.Run]},
)
async def list_(thread_id: str | None, query: RunList) -> Response:
    status = None if query.status is None else str(query.status)
    found = await supervisor().list_runs(
        thread_id, status=status, limit=query.limit, offset=query.offset, owner=owner()
    )
    return jsonify([run_json(r) for r in found])


@route(
    "/runs/feed",
    "GET",
    summary="Live feed of run status changes, SSE (runyard)",
    query=Feed,
    answers={200: EVENT_STREAM},
)
async def feed(query: Feed) -> Response:
    sup = supervisor()
    recent = await sup.list_runs(None, limit=query.limit, owner=owner())
    return feed_response(sup, recent, owner=owner(), heartbeat=settings().heartbeat)


@route("/threads/<thread_id>/runs/<run_id>", "GET", summary="Read a run", answers={200: shapes.Run})
@route(
    "/runs/<run_id>",
    "GET",
    summary="Read a run by its id alone (runyard)",
    defaults=NO_THREAD,
    answers={200: shapes.Run},
)
async def get(thread_id: str | None, run_id: str) -> Response:
    return jsonify(run_json(await supervisor().get_run(run_id, thread_id=thread_id, owner=owner())))


@route(
    "/threads/<thread_id>/runs/<run_id>",
    "DELETE",
    summary="Delete a finished run",
    answers={204: NO_BODY},
    raises=(Conflict,),
)
async def delete(thread_id: str, run_id: str) -> Response:
    await supervisor().delete_run(run_id, thread_id=thread_id, owner=owner())
    return Response(b"", status=204)


@route(
    "/threads/<thread_id>/runs/<run_id>/join",
    "GET",
    summary="Wait for a run's end",
    answers={200: FINAL},
    raises=(TooManyRequests,),
)
@route(
    "/runs/<run_id>/join",
    "GET",
    summary="Wait for a run's end",
    defaults=NO_THREAD,
    answers={200: FINAL},
    raises=(TooManyRequests,),
)
async def join(thread_id: str | None, run_id: str) -> Response:
    # A client that leaves cancels only this wait; the run goes on.
    run = await supervisor().get_run(run_id, thread_id=thread_id, owner=owner())
    return await _when_done(run, cancel_on_disconnect=False)


async def _when_done(run: Run, *, cancel_on_disconnect: bool) -> Response:
    """The run's final body once it has ended; a newline every few seconds until then.

    JSON parsers skip the newlines; proxies see a live connection. A client
    that leaves ends the wait (and, with ``cancel_on_disconnect``, the run).
    """
    sup, who, run_id = supervisor(), owner(), run.run_id
    if run.status.terminal:
        return _located(jsonify(final_body(run)), run, join=True)
    sup.check_wait_room(who)  # 429 now, before the answer has begun

    async def answer() -> AsyncGenerator[bytes, None]:
        finished: Run | None = None
        try:
            while finished is None:
                with trio.move_on_after(WAIT_KEEPALIVE):
                    finished = await sup.wait_run(run_id, owner=who)
                if finished is None:
                    yield b"\n"
            yield json.dumps(final_body(finished), separators=(",", ":")).encode()
        finally:
            if cancel_on_disconnect and finished is None:
                sup.cancel_nowait(run_id, CancelReason.DISCONNECT)

    response = Response(answer(), status=200, content_type="application/json")
    response.timeout = None  # Quart's RESPONSE_TIMEOUT would cut a long wait
    return _located(response, run, join=True)


JOINED = {
    200: EVENT_STREAM,
    204: Media(None, "The client has every event already (its Last-Event-ID is the end)"),
}


@route(
    "/threads/<thread_id>/runs/<run_id>/stream",
    "GET",
    summary="Join a run's stream",
    query=JoinStream,
    headers=(LAST_EVENT_ID,),
    answers=JOINED,
    raises=(TooManyRequests,),
)
@route(
    "/runs/<run_id>/stream",
    "GET",
    summary="Join a run's stream",
    defaults=NO_THREAD,
    query=JoinStream,
    headers=(LAST_EVENT_ID,),
    answers=JOINED,
    raises=(TooManyRequests,),
)
async def join_stream(thread_id: str | None, run_id: str, query: JoinStream) -> Response:
    sup = supervisor()
    run = await sup.get_run(run_id, thread_id=thread_id, owner=owner())
    after = schema.last_event_id(request.headers.get("Last-Event-ID"))
    modes = query.modes()
    cancel = query.cancel_on_disconnect
    if after is not None and run.status.terminal and after >= await sup.last_seq(run_id):
        # The client has the whole log, end included; 204 stops an EventSource.
        return _located(Response(b"", status=204), run)
    # Past the end of a live run, this waits for ids > after: never a duplicate.
    return sse_response(
        sup,
        run,
        sup.subscribe(run_id, -1 if after is None else after, limited=True),
        modes=modes,
        cancel_on_disconnect=cancel,
        heartbeat=settings().heartbeat,
    )


CANCELLED = {
    200: Json(shapes.Run, "The run, ended (wait=true)"),
    202: Json(shapes.Run, "The run; its cancellation is under way"),
}


@route(
    "/threads/<thread_id>/runs/<run_id>/cancel",
    "POST",
    summary="Cancel a run",
    query=Cancel,
    answers=CANCELLED,
)
@route(
    "/runs/<run_id>/cancel",
    "POST",
    summary="Cancel a run",
    defaults=NO_THREAD,
    query=Cancel,
    answers=CANCELLED,
)
async def cancel(thread_id: str | None, run_id: str, query: Cancel) -> Response:
    reason = CancelReason.ROLLBACK if query.action == "rollback" else CancelReason.USER
    run = await supervisor().cancel_run(
        run_id, thread_id=thread_id, reason=reason, wait=query.wait, owner=owner()
    )
    response = jsonify(run_json(run))
    response.status_code = 200 if query.wait else 202
    return response
