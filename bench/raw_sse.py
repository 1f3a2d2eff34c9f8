"""An experiment for docs/capacity.md: runyard's engine without its HTTP framework.

The real store, supervisor, commit writer, event bus and SSE frame loop
(``runyard.http.sse.frames``), the real ``tokens`` agent, but ``POST
/runs/stream`` is read and answered on a raw trio socket (chunked HTTP/1.1
written by hand) instead of through hypercorn, h11 and Quart. Workload 9
against this and against ``runyard serve`` side by side tells how much of a
token's cost is runyard's own and how much is the framework's per-write
path. Not a server to use: no other route, no limits, no shutdown drain.

    python bench/raw_sse.py PORT DB     # from bench/, so token_agent imports
"""

from __future__ import annotations

import json
import sys

import trio

from runyard.cli import tune_gc
from runyard.config import Settings
from runyard.http.bodies import RunCreate
from runyard.http.sse import frames
from runyard.store import SQLiteStore
from runyard.supervisor import Supervisor

HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-store\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n"
)
OK = b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{"ok":true}'


async def read_request(stream: trio.SocketStream) -> tuple[str, bytes] | None:
    """(request line, body) of one request; None when the client closed."""
    buffer = b""
    while b"\r\n\r\n" not in buffer:
        data = await stream.receive_some(65536)
        if not data:
            return None
        buffer += data
    head, _, body = buffer.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.lower() == "content-length":
            length = int(value)
    while len(body) < length:
        body += await stream.receive_some(65536)
    return lines[0], body


def handler(supervisor: Supervisor, settings: Settings):  # type: ignore[no-untyped-def]
    async def handle(stream: trio.SocketStream) -> None:
        try:
            request = await read_request(stream)
            if request is None:
                return
            line, body = request
            if line.startswith("GET /ok"):
                await stream.send_all(OK)
                return
            run = RunCreate.model_validate(json.loads(body))
            handle = await supervisor.create_run(
                run.run_request(thread_id=None, owner="", streaming=True)
            )
            subscription = supervisor.subscribe(handle.run_id)
            await stream.send_all(HEAD)
            async for chunk in frames(
                supervisor,
                handle.run_id,
                subscription,
                modes=handle.request.stream_mode,
                cancel_on_disconnect=False,
                heartbeat=settings.heartbeat,
            ):
                await stream.send_all(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            await stream.send_all(b"0\r\n\r\n")
        except trio.BrokenResourceError:
            return

    return handle


async def main(port: int, db: str) -> None:
    settings = Settings(
        db=db, agents={"tokens": "token_agent:tokens"}, max_active_runs=50_000,
        max_active_runs_per_owner=50_000,
    )  # fmt: skip
    tune_gc()  # as runyard serve does
    store = SQLiteStore(db, exclusive=True)
    await store.open()
    try:
        async with trio.open_nursery() as root:
            supervisor = Supervisor(store, settings.registry(), settings)
            await root.start(supervisor.serve)
            await trio.serve_tcp(handler(supervisor, settings), port, host="127.0.0.1")
    finally:
        with trio.CancelScope(shield=True):
            await store.aclose()


if __name__ == "__main__":
    trio.run(main, int(sys.argv[1]), sys.argv[2])
