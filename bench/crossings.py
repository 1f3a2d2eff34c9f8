"""How often runyard's graph path crosses between asyncio and trio, per unit of work.

    python bench/crossings.py          # in the bench venv: nox -s bench --install-only

Starts ``runyard serve --langgraph-json bench/graphs/langgraph.json`` in a
child process whose trio-asyncio, trio and store entry points are wrapped with
counters, drives small G1-G3 workloads through it and prints, per event, step
or turn: asyncio callbacks run by trio-asyncio (each one a pass of trio's
scheduler), ``trio_as_aio`` calls by target, trio tasks spawned and SQLite
reads. The counters cost time: read the counts, not the speed. Commits are not
counted here: how many events share one depends on timing, which the counters
change; read ``runyard_commit_transactions_total`` on ``/metrics`` instead.
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import graph_workloads as gw
import httpx

DUMP_EVERY = 0.2  # seconds between two dumps of the counters by the server
SETTLE = 0.6  # seconds to wait for the counters of a finished workload to be dumped


def serve(out: str, argv: list[str]) -> int:
    """The child: runyard serve, with counters dumped to ``out`` as JSON."""
    import trio._core._run as trio_run
    import trio_asyncio
    import trio_asyncio._base as trio_asyncio_base

    from runyard.cli import main
    from runyard.store import connection

    counts: collections.Counter[str] = collections.Counter()

    def counting(name: str, fn: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            counts[name] += 1
            return fn(*args, **kwargs)

        return wrapper

    trio_as_aio = trio_asyncio.trio_as_aio

    def counted_trio_as_aio(fn: Any, *args: Any, **kwargs: Any) -> Any:
        crossing = trio_as_aio(fn, *args, **kwargs)
        name = f"trio_as_aio: {getattr(fn, '__qualname__', fn)}"
        return counting(name, counting("trio_as_aio calls", crossing))

    trio_asyncio.trio_as_aio = counted_trio_as_aio
    loop = trio_asyncio_base.BaseTrioEventLoop
    loop._main_loop_one = counting("asyncio callbacks run by trio-asyncio", loop._main_loop_one)
    trio_run.Runner.spawn_impl = counting("trio tasks spawned", trio_run.Runner.spawn_impl)  # type: ignore[method-assign]
    base = connection.SQLiteBase
    base._read = counting("SQLite reads", base._read)  # type: ignore[method-assign]

    def dump() -> None:
        while True:
            time.sleep(DUMP_EVERY)
            Path(f"{out}.tmp").write_text(json.dumps(dict(counts)))
            os.replace(f"{out}.tmp", out)

    threading.Thread(target=dump, daemon=True).start()
    return main(argv)


async def drive(url: str, out: Path) -> None:
    async def counted() -> dict[str, int]:
        await asyncio.sleep(SETTLE)
        return _read(out)

    workloads = [
        ("G3a, per custom event", gw.stream_events(url, "stream", 2000)),
        ("G3b, per messages event", gw.stream_events(url, "stream", 500, tokens=True)),
        ("native emitter agent, per event", gw.stream_events(url, "emitter", 2000)),
        ("G1, per loop step", gw.loop_remote(url, 200, 2)),
        ("G2, per chat turn", gw.chat_turns(url, 10)),
    ]
    for title, workload in workloads:
        before = await counted()
        units = (await workload)["units"]
        after = await counted()
        print(f"{title}:")
        deltas = {k: v - before.get(k, 0) for k, v in after.items()}
        for name, delta in sorted(deltas.items(), key=lambda kv: -kv[1]):
            if delta:
                print(f"  {delta / units:8.2f}  {name}")


def _read(counts: Path) -> dict[str, int]:
    return dict(json.loads(counts.read_text()))


def _answers(url: str) -> bool:
    try:
        return httpx.get(url).status_code == 200
    except httpx.TransportError:
        return False


def main() -> None:
    folder = Path(tempfile.mkdtemp(prefix="runyard-crossings-"))
    out = folder / "counts.json"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    cmd = [sys.executable, __file__, "--serve", str(out), "serve", "--port", str(port)]
    cmd += ["--db", str(folder / "db.sqlite3"), "--langgraph-json", str(gw.CONFIG)]
    env = {**os.environ, "RUNYARD_LOG_LEVEL": "warning"}
    with open(folder / "server.log", "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while not (out.exists() and _answers(f"{url}/ok")):
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"the server did not start; see {folder}/server.log")
            time.sleep(0.1)
        asyncio.run(drive(url, out))
    finally:
        proc.terminate()
        proc.wait(60)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--serve"]:
        sys.exit(serve(sys.argv[2], sys.argv[3:]))
    main()
