"""kill -9 in the middle of a graph run: checkpoints never ahead of their events, and the
opt-in resume from the last checkpoint ends where an uninterrupted run would."""

from __future__ import annotations

import json
import signal
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from runyard.model import Event

from .helpers import assert_gapless, parse_frames
from .process import ServerProcess, free_port

PROJECT = Path(__file__).with_name("lg_counter") / "langgraph.json"
TARGET = 60  # steps; the crash lands somewhere in the middle


@pytest.fixture
def processes() -> Iterator[list[ServerProcess]]:
    started: list[ServerProcess] = []
    yield started
    for p in started:
        p.ensure_stopped()


def _spawn(started: list[ServerProcess], db: str, port: int, logs: Path, **env: str) -> Any:
    server = ServerProcess(db, port, logs, RUNYARD_LANGGRAPH_JSON=str(PROJECT), **env)
    server.start()
    started.append(server)
    return server


async def _counting(server: ServerProcess, body: dict[str, Any], *, until: int) -> tuple[str, str]:
    """Start a counter run on a new thread; return (thread, run) once it has counted ``until``."""
    await server.wait_ready()
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as c:
        thread = (await c.post("/threads", json={})).json()["thread_id"]
        run = (await c.post(f"/threads/{thread}/runs", json=body)).json()["run_id"]
        async with c.stream("GET", f"/threads/{thread}/runs/{run}/stream") as s:
            async for line in s.aiter_lines():
                if line.startswith("data: ") and f'"count":{until}' in line.replace(" ", ""):
                    break
    return thread, run


async def _crash_mid_run(
    processes: list[ServerProcess], tmp_path: Path, body: dict[str, Any], **env: str
) -> tuple[str, ServerProcess, str, str]:
    """Start a counter run, kill -9 the server once it has counted past 10, restart it."""
    db = str(tmp_path / "runyard.sqlite3")
    port = free_port()
    first = _spawn(processes, db, port, tmp_path, **env)
    thread, run = await _counting(first, body, until=10)
    first.signal(signal.SIGKILL)
    assert await first.wait_exit() == -signal.SIGKILL
    second = _spawn(processes, db, port, tmp_path, **env)
    await second.wait_ready()
    return db, second, thread, run


def _committed(db: str, run_id: str) -> tuple[list[dict[str, Any]], list[int]]:
    """The run's logged events (as the database has them) and its checkpoints' steps."""
    conn = sqlite3.connect(db)
    events = [
        {"seq": seq, "event": event, "data": json.loads(data)}
        for seq, event, data in conn.execute(
            "SELECT seq, event, data FROM events WHERE run_id = ? ORDER BY seq", (run_id,)
        )
    ]
    steps = [
        json.loads(meta)["step"]
        for (meta,) in conn.execute("SELECT metadata FROM checkpoints WHERE run_id = ?", (run_id,))
    ]
    return events, sorted(steps)


async def _stream(server: ServerProcess, thread: str, run: str) -> list[Any]:
    async with httpx.AsyncClient(base_url=server.url, timeout=60) as c:
        response = await c.get(f"/threads/{thread}/runs/{run}/stream")
    return parse_frames(response.text)[0]


BODY = {
    "assistant_id": "counter",
    "input": {"target": TARGET, "pause": 0.03},
    "stream_mode": ["values", "custom"],
}


async def test_after_kill_9_every_checkpoint_has_its_events_and_history_is_intact(
    tmp_path: Path, processes: list[ServerProcess]
) -> None:
    db, server, thread, run = await _crash_mid_run(processes, tmp_path, BODY)
    frames = await _stream(server, thread, run)
    assert frames[-1].event == "end"
    assert frames[-1].data["status"] == "interrupted"
    events, steps = _committed(db, run)
    assert [e["seq"] for e in events] == list(range(len(events)))
    # Each checkpoint of a loop step k (k >= 1) comes with the values event of count k.
    counts_logged = {e["data"].get("count") for e in events if e["event"] == "values"}
    loop_steps = [k for k in steps if k >= 1]
    assert loop_steps, "some checkpoints were committed before the crash"
    assert set(loop_steps) <= counts_logged
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as c:
        history = (await c.post(f"/threads/{thread}/history", json={"limit": 1000})).json()
        state = (await c.get(f"/threads/{thread}/state")).json()
    counts = [h["values"].get("count", 0) for h in history]
    assert counts == sorted(counts, reverse=True), "newest first"
    assert counts[0] == max(loop_steps)
    assert state["values"]["count"] == max(loop_steps)
    assert state["values"]["seen"] == list(range(1, max(loop_steps) + 1))
    assert state["values"]["count"] < TARGET


async def test_the_opt_in_resume_continues_from_the_last_checkpoint_to_the_same_end(
    tmp_path: Path, processes: list[ServerProcess]
) -> None:
    body = {**BODY, "resume_on_restart": True}
    _, server, thread, run = await _crash_mid_run(processes, tmp_path, body)
    frames = await _stream(server, thread, run)
    assert_gapless([Event.from_text(run, f.id or 0, f.event, "{}") for f in frames])  # two attempts
    assert [f.data["attempt"] for f in frames if f.event == "metadata"] == [1, 2]
    assert frames[-1].data["status"] == "success"
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as c:
        state = (await c.get(f"/threads/{thread}/state")).json()
        stored = (await c.get(f"/threads/{thread}/runs/{run}")).json()
        again = await c.post(f"/threads/{thread}/runs/wait", json={**BODY, "input": None})
    # The same end as an uninterrupted run: every count once, in order.
    assert state["values"]["count"] == TARGET
    assert state["values"]["seen"] == list(range(1, TARGET + 1))
    assert stored["status"] == "success"
    assert again.status_code == 200


async def test_a_resumable_run_caught_by_shutdown_resumes_at_the_next_start(
    tmp_path: Path, processes: list[ServerProcess]
) -> None:
    db = str(tmp_path / "runyard.sqlite3")
    port = free_port()
    env = {"RUNYARD_RESUME_GRAPH_RUNS": "true", "RUNYARD_GRACE": "0.2"}
    first = _spawn(processes, db, port, tmp_path, **env)
    thread, run = await _counting(first, BODY, until=5)
    first.signal(signal.SIGTERM)
    assert await first.wait_exit() == 0
    conn = sqlite3.connect(db)
    row = conn.execute("SELECT status FROM runs WHERE run_id = ?", (run,)).fetchone()
    assert row == ("running",), "left for the next start, not ended"
    second = _spawn(processes, db, port, tmp_path, **env)
    await second.wait_ready()
    frames = await _stream(second, thread, run)
    assert [f.data["attempt"] for f in frames if f.event == "metadata"] == [1, 2]
    assert frames[-1].data["status"] == "success"
    async with httpx.AsyncClient(base_url=second.url, timeout=30) as c:
        state = (await c.get(f"/threads/{thread}/state")).json()
    assert state["values"]["seen"] == list(range(1, TARGET + 1))
