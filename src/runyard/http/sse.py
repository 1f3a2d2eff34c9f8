"""Server-Sent Events: a run's log as ``event``/``data``/``id`` frames.

Each event's frame was encoded once, when it was logged; a client that is
behind gets several frames in one write. An idle stream carries a
``: heartbeat`` comment every ``heartbeat`` seconds: when the event bus keeps
quiet runs alive (one timer for all streams) a poke from it is the cue, and
otherwise a timeout on each wait, which at LLM token rates costs about a
tenth of a token's server time. When the client goes
away, quart-trio cancels the request's nursery and the generator's
``finally`` runs at once: that is where ``cancel_on_disconnect`` acts (a
non-blocking cancel; the run persists its own final state).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from urllib.parse import quote

import trio
from quart import Response

from ..events import Subscription
from ..model import CancelReason, Event, Run, dumps
from ..stats import HttpStats
from ..supervisor import Supervisor
from .metrics import http_stats
from .render import run_json

# An SSE comment: clients ignore it, proxies see a live connection.
HEARTBEAT = b": heartbeat\n\n"
# Events every stream carries, whatever its stream_mode.
ALWAYS = frozenset({"metadata", "error", "end"})


def wanted_events(modes: list[str] | None) -> frozenset[str] | None:
    """Event names a stream with these modes carries; None means all."""
    if not modes:
        return None
    names = set(ALWAYS)
    for mode in modes:
        names.add("messages" if mode == "messages-tuple" else mode)
    return frozenset(names)


def _passes(event: Event, names: frozenset[str] | None) -> bool:
    """Whether a stream filtered to ``names`` carries ``event``.

    A subgraph's ``values|ns1|ns2`` passes as ``values`` (the reference server
    drops them, langgraph issue #7778), and ``messages/partial`` as
    ``messages``: either messages mode passes both shapes, as on the reference.
    """
    return names is None or event.event.partition("|")[0].partition("/")[0] in names


def run_paths(run: Run, modes: list[str] | None = None) -> tuple[str, str]:
    """``Content-Location`` (the run) and ``Location`` (its join stream)."""
    base = f"/threads/{quote(run.thread_id, safe='')}/runs/{quote(run.run_id, safe='')}"
    query = "".join(f"&stream_mode={m}" for m in modes or ())
    return base, f"{base}/stream" + ("?" + query[1:] if query else "")


async def frames(
    supervisor: Supervisor,
    run_id: str,
    subscription: Subscription,
    *,
    modes: list[str] | None,
    cancel_on_disconnect: bool,
    heartbeat: float,
    counted: HttpStats | None = None,
) -> AsyncGenerator[bytes, None]:
    """The bytes of a run stream: batches of frames, heartbeats when idle.

    When the consumer goes away before ``end`` (quart-trio cancels the
    request, or closes this generator), the ``finally`` block detaches the
    subscription and, with ``cancel_on_disconnect``, cancels the run without
    blocking.
    """
    names = wanted_events(modes)
    stats = HttpStats() if counted is None else counted  # adds up the bytes written
    try:
        while True:
            if subscription.kept_alive:
                batch = await subscription.next(pokes=True)
            else:
                with trio.move_on_after(heartbeat) as idle:
                    batch = await subscription.next()
                if idle.cancelled_caught:
                    batch = []
            if batch == []:
                stats.stream_bytes += len(HEARTBEAT)
                yield HEARTBEAT
                continue
            if batch is None:
                return
            chunk = b"".join(e.frame for e in batch if _passes(e, names))
            if chunk:
                stats.stream_bytes += len(chunk)
                yield chunk
    finally:
        ended = subscription.done
        subscription.close()
        if cancel_on_disconnect and not ended:
            supervisor.cancel_nowait(run_id, CancelReason.DISCONNECT)


def sse_response(
    supervisor: Supervisor,
    run: Run,
    subscription: Subscription,
    *,
    modes: list[str] | None,
    cancel_on_disconnect: bool,
    heartbeat: float,
) -> Response:
    body = frames(
        supervisor,
        run.run_id,
        subscription,
        modes=modes,
        cancel_on_disconnect=cancel_on_disconnect,
        heartbeat=heartbeat,
        counted=http_stats(),
    )
    content_location, location = run_paths(run, modes)
    response = Response(
        body,
        status=200,
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-store",
            "X-Accel-Buffering": "no",
            "Content-Location": content_location,
            "Location": location,
        },
    )
    response.timeout = None  # Quart's RESPONSE_TIMEOUT would cut a long stream
    return response


def feed_response(
    supervisor: Supervisor, recent: list[Run], *, owner: str, heartbeat: float
) -> Response:
    """``snapshot`` (recent runs, newest first), then a ``run`` event per change.

    Not resumable: a reconnecting client gets a fresh snapshot. A client too
    slow for the feed is dropped and reconnects the same way.
    """
    changes = supervisor.watch()

    async def body() -> AsyncGenerator[bytes, None]:
        try:
            snapshot = [run_json(r) for r in recent]
            yield f"event: snapshot\ndata: {dumps(snapshot)}\n\n".encode()
            while True:
                run = None
                with trio.move_on_after(heartbeat):
                    try:
                        run = await changes.receive()
                    except trio.EndOfChannel:
                        return
                if run is None:
                    yield HEARTBEAT
                elif run.owner == owner:
                    yield f"event: run\ndata: {dumps(run_json(run))}\n\n".encode()
        finally:
            changes.close()

    response = Response(
        body(),
        status=200,
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-store",
            "X-Accel-Buffering": "no",
        },
    )
    response.timeout = None
    return response
