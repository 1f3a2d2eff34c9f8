"""Process-level lifecycle: SIGTERM drains in its bound, SIGKILL recovers, one owner per file."""

from __future__ import annotations

import json
import signal
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from langgraph_sdk import get_sync_client

from runyard.config import Settings
from runyard.server import shutdown_bound

from .helpers import parse_frames
from .process import ServerProcess, free_port

pytestmark = pytest.mark.trio

GRACE = 1.5
CLEANUP = 2.0
ENV = {"RUNYARD_GRACE": str(GRACE), "RUNYARD_CLEANUP_DEADLINE": str(CLEANUP)}


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[list[ServerProcess]]:
    started: list[ServerProcess] = []
    yield started
    for p in started:
        p.ensure_stopped()


def _spawn(processes: list[ServerProcess], db: str, port: int, tmp: Path) -> ServerProcess:
    p = ServerProcess(db, port, tmp, **ENV)
    processes.append(p)
    p.start()
    return p


def _rows(db: str) -> dict[str, tuple[str, str | None]]:
    conn = sqlite3.connect(db)
    try:
        rows = conn.execute("SELECT run_id, status, cancel_reason FROM runs").fetchall()
    finally:
        conn.close()
    return {r[0]: (r[1], r[2]) for r in rows}


async def test_sigterm_drains_runs_streams_and_waits_within_the_bound(
    tmp_path: Path, processes: list[ServerProcess]
) -> None:
    db = str(tmp_path / "runyard.sqlite3")
    server = _spawn(processes, db, free_port(), tmp_path)
    await server.wait_ready()
    results: dict[str, Any] = {}
    streaming = trio.Event()

    async with httpx.AsyncClient(base_url=server.url, timeout=60) as c:
        quick = (
            await c.post("/runs", json={"assistant_id": "sleepy", "input": {"delay": 0.5}})
        ).json()

        async def stream_client() -> None:
            body = {"assistant_id": "emitter", "input": {"n": 100000, "delay": 0.01}}
            async with c.stream("POST", "/runs/stream", json=body) as response:
                text = ""
                async for chunk in response.aiter_text():
                    text += chunk
                    streaming.set()
            results["stream"] = parse_frames(text)[0]
            results["stream_run"] = response.headers["content-location"].rsplit("/", 1)[1]

        async def wait_client() -> None:
            body = {"assistant_id": "sleepy", "input": {"delay": 600}}
            response = await c.post("/runs/wait", json=body)
            results["wait"] = (response.status_code, response.json())
            results["wait_run"] = response.headers["content-location"].rsplit("/", 1)[1]

        async with trio.open_nursery() as nursery:
            nursery.start_soon(stream_client)
            nursery.start_soon(wait_client)
            await streaming.wait()
            await trio.sleep(0.2)
            began = time.monotonic()
            server.signal(signal.SIGTERM)
            await trio.sleep(0.3)
            refused = await c.post("/runs", json={"assistant_id": "echo"})
            assert refused.status_code == 503
            assert "retry-after" in refused.headers
            code = await server.wait_exit()
            took = time.monotonic() - began

    assert code == 0, server.output()
    settings = Settings(grace=GRACE, cleanup_deadline=CLEANUP)
    assert took < shutdown_bound(settings), server.output()
    frames = results["stream"]
    assert frames[-1].event == "end"
    assert frames[-1].data["status"] == "interrupted"
    assert [f.event for f in frames].count("end") == 1
    status, body = results["wait"]
    assert status == 200
    assert body["__error__"]["error"] == "RunInterrupted"
    rows = _rows(db)
    assert rows[quick["run_id"]] == ("success", None)
    assert rows[results["stream_run"]] == ("interrupted", "shutdown")
    assert rows[results["wait_run"]] == ("interrupted", "shutdown")
    log = server.output()
    for step in ("shutdown.signal", "shutdown.grace_over", "shutdown.cleanups_done",
                 "shutdown.http_stopped", "server.stopped"):  # fmt: skip
        assert step in log


async def test_a_second_signal_ends_the_grace_period_but_keeps_the_cleanup(
    tmp_path: Path, processes: list[ServerProcess]
) -> None:
    db = str(tmp_path / "runyard.sqlite3")
    server = ServerProcess(db, free_port(), tmp_path, RUNYARD_GRACE="60")
    processes.append(server)
    server.start()
    await server.wait_ready()
    async with httpx.AsyncClient(base_url=server.url) as c:
        run = (
            await c.post("/runs", json={"assistant_id": "sleepy", "input": {"delay": 600}})
        ).json()
    server.signal(signal.SIGTERM)
    await trio.sleep(0.3)
    server.signal(signal.SIGINT)
    assert await server.wait_exit(limit=15) == 0
    assert _rows(db)[run["run_id"]] == ("interrupted", "shutdown")


async def test_sigkill_mid_run_then_restart_recovers_and_the_sdk_resumes(
    tmp_path: Path, processes: list[ServerProcess]
) -> None:
    db = str(tmp_path / "runyard.sqlite3")
    port = free_port()
    first = _spawn(processes, db, port, tmp_path)
    await first.wait_ready()
    async with httpx.AsyncClient(base_url=first.url) as c:
        run = (
            await c.post(
                "/runs", json={"assistant_id": "emitter", "input": {"n": 3000, "delay": 0.01}}
            )
        ).json()
    parts: list[Any] = []
    failure: list[BaseException] = []
    seen_some = threading.Event()

    def follow() -> None:
        try:
            client = get_sync_client(url=first.url, api_key=None, timeout=30)
            for part in client.runs.join_stream(run["thread_id"], run["run_id"]):
                parts.append(part)
                if len(parts) >= 20:
                    seen_some.set()
        except BaseException as exc:
            failure.append(exc)
            seen_some.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(trio.to_thread.run_sync, follow)
        await trio.to_thread.run_sync(seen_some.wait)
        first.signal(signal.SIGKILL)
        assert await first.wait_exit() == -signal.SIGKILL
        # The rows as the dead process left them: running, nobody owns it.
        assert _rows(db)[run["run_id"]] == ("running", None)
        await trio.sleep(0.5)
        second = _spawn(processes, db, port, tmp_path)
        await second.wait_ready()
    assert not failure, failure
    ids = [int(p.id) for p in parts]
    assert ids == list(range(len(ids))), "ids are gapless and duplicate-free across the restart"
    assert parts[0].event == "metadata"
    assert [p.data["i"] for p in parts[1:-1]] == list(range(len(parts) - 2))
    assert parts[-1].event == "end"
    assert parts[-1].data["status"] == "interrupted"
    async with httpx.AsyncClient(base_url=second.url) as c:
        after = (await c.get(f"/threads/{run['thread_id']}/runs/{run['run_id']}")).json()
        replay = (await c.get(f"/threads/{run['thread_id']}/runs/{run['run_id']}/stream")).text
    assert (after["status"], after["cancel_reason"]) == ("interrupted", "restart")
    assert [f.id for f in parse_frames(replay)[0]] == ids
    second.signal(signal.SIGTERM)
    assert await second.wait_exit() == 0


async def test_a_second_process_on_the_same_database_refuses_to_start(
    tmp_path: Path, processes: list[ServerProcess]
) -> None:
    db = str(tmp_path / "runyard.sqlite3")
    owner = _spawn(processes, db, free_port(), tmp_path)
    await owner.wait_ready()
    intruder = _spawn(processes, db, free_port(), tmp_path)
    assert await intruder.wait_exit() == 1
    message = intruder.output().strip().splitlines()[-1]
    assert message.startswith(f"runyard: {db} is in use by another runyard process (pid ")
    # The owner is untouched and still serving.
    async with httpx.AsyncClient(base_url=owner.url) as c:
        assert (await c.post("/runs/wait", json={"assistant_id": "echo", "input": 1})).json() == 1
    owner.signal(signal.SIGTERM)
    assert await owner.wait_exit() == 0


async def test_an_empty_or_half_made_database_file_is_accepted(
    tmp_path: Path, processes: list[ServerProcess]
) -> None:
    empty = tmp_path / "empty.sqlite3"
    empty.write_bytes(b"")  # a crash right after the file was created
    half = tmp_path / "half.sqlite3"
    conn = sqlite3.connect(half)
    conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")  # no version yet
    conn.commit()
    conn.close()
    for db in (empty, half):
        server = _spawn(processes, str(db), free_port(), tmp_path)
        await server.wait_ready()
        async with httpx.AsyncClient(base_url=server.url) as c:
            waited = await c.post("/runs/wait", json={"assistant_id": "echo", "input": [db.name]})
        assert waited.json() == [db.name]
        server.signal(signal.SIGTERM)
        assert await server.wait_exit() == 0


async def test_a_corrupt_database_stops_start_up_with_one_clear_line(
    tmp_path: Path, processes: list[ServerProcess]
) -> None:
    db = tmp_path / "runyard.sqlite3"
    db.write_bytes(json.dumps({"not": "sqlite"}).encode() * 200)
    server = _spawn(processes, str(db), free_port(), tmp_path)
    assert await server.wait_exit() == 1
    assert "is not a usable runyard database" in server.output().strip().splitlines()[-1]
    assert db.read_bytes().startswith(b'{"not"')
