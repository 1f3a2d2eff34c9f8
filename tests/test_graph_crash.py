"""kill -9 in the middle of a graph run: checkpoints never ahead of their events, and the
opt-in resume from the last checkpoint ends where an uninterrupted run would."""

from __future__ import annotations

import asyncio
import json
import operator
import signal
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, TypedDict

import httpx
import pytest
import trio
from langgraph.graph import END, START, StateGraph

from runyard.agents import AgentRegistry
from runyard.config import Settings
from runyard.langgraph import graph_agent
from runyard.model import Event, Run, RunRequest, RunStatus, new_id, now
from runyard.store import Batch, SQLiteStore

from .helpers import assert_gapless, parse_frames, start_supervisor
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


class _Count(TypedDict, total=False):
    target: int
    count: int
    seen: Annotated[list[int], operator.add]


def _counter_whose_edge_waits(at: int, reached: threading.Event) -> Any:
    """tests/lg_counter's graph, but the edge after step ``at`` waits (once) until cancelled:
    a cancel lands after the step has written its state and before the edge has routed."""
    waited = False

    async def step(state: _Count) -> dict[str, Any]:
        count = state.get("count", 0) + 1
        return {"count": count, "seen": [count]}

    async def more(state: _Count) -> str:
        nonlocal waited
        if state["count"] == at and not waited:
            waited = True
            reached.set()
            await asyncio.sleep(3600)  # until the shutdown cancels the run
        return "step" if state["count"] < state["target"] else END

    builder = StateGraph(_Count)
    builder.add_node("step", step)
    builder.add_edge(START, "step")
    builder.add_conditional_edges("step", more, ["step", END])
    return builder.compile()


async def test_a_step_cut_between_its_write_and_its_edge_runs_again_on_resume(
    store: SQLiteStore,
) -> None:
    # LangGraph saves a cancelled task's partial writes with its CancelledError, and on
    # resume reads a task with any output write as finished: the step would not run
    # again, its edge would never route, and the resumed run would end early.
    reached = threading.Event()
    agents = AgentRegistry([graph_agent("counter", _counter_whose_edge_waits(3, reached))])
    settings = Settings(resume_graph_runs=True)
    async with trio.open_nursery() as nursery:
        first = await start_supervisor(nursery, store, agents, settings)
        handle = await first.create_run(RunRequest("counter", {"target": 6}))
        with trio.fail_after(10):
            await trio.to_thread.run_sync(reached.wait, abandon_on_cancel=True)
        await first.shutdown(grace=0)
    run = await _resumed_at_the_next_start(store, agents, settings, handle.run_id)
    assert run.output["seen"] == [1, 2, 3, 4, 5, 6]


async def _resumed_at_the_next_start(
    store: SQLiteStore, agents: AgentRegistry, settings: Settings, run_id: str
) -> Any:
    """Start a supervisor on ``store``; the run it resumes ends ``success`` as attempt 2."""
    async with trio.open_nursery() as nursery:
        second = await start_supervisor(nursery, store, agents, settings)
        with trio.fail_after(10):
            await second.wait_run(run_id)
        await second.shutdown(grace=0)
    run = await store.get_run(run_id)
    assert run is not None
    assert (run.attempt, run.status) == (2, RunStatus.SUCCESS)
    assert isinstance(run.output, dict)
    return run


async def test_a_resumable_run_that_saved_nothing_starts_over_with_its_input(
    store: SQLiteStore,
) -> None:
    # A run that starts at once commits its running mark with its row, so a crash can
    # leave it running before its input's checkpoint: resuming "from the last checkpoint"
    # would resume the run before it and drop this one's input.
    agents = AgentRegistry(
        [graph_agent("counter", _counter_whose_edge_waits(-1, threading.Event()))]
    )
    settings = Settings(resume_graph_runs=True)
    async with trio.open_nursery() as nursery:
        first = await start_supervisor(nursery, store, agents, settings)
        done = await first.create_run(RunRequest("counter", {"target": 2}))
        with trio.fail_after(10):
            await first.wait_run(done.run_id)
        await first.shutdown(grace=0)
    thread = done.run.thread_id
    ts = now()
    request = RunRequest("counter", {"target": 4}, thread_id=thread)
    crashed = Run(
        run_id=new_id(), thread_id=thread, assistant_id="counter", status=RunStatus.RUNNING,
        created_at=ts, updated_at=ts, kwargs={**request.kwargs(), "graph_id": "counter"},
    )  # fmt: skip
    metadata = Event.make(crashed.run_id, 0, "metadata", {"run_id": crashed.run_id})
    await store.commit(Batch(created=[(crashed, None)], events=[metadata]))
    run = await _resumed_at_the_next_start(store, agents, settings, crashed.run_id)
    assert run.output["seen"] == [1, 2, 3, 4], "its input was run, after the run before it"
