"""Database and client faults, injected for real (no mocks of SQLite itself)."""

from __future__ import annotations

import random
import sqlite3
import threading
import time

import httpx
import pytest
import trio

from runyard.model import RunRequest, RunStatus
from runyard.server import Server
from runyard.store import SQLiteStore

from ..helpers import assert_gapless, collect, parse_frames, start_supervisor, stored_events

pytestmark = pytest.mark.trio


async def test_an_exclusive_lock_held_past_the_busy_timeout_is_ridden_out(
    store: SQLiteStore, nursery: trio.Nursery, db_path: str
) -> None:
    sup = await start_supervisor(nursery, store)
    handle = await sup.create_run(RunRequest("emitter", {"n": 400, "delay": 0.002}))
    holding = threading.Event()

    def hold_exclusive() -> None:
        other = sqlite3.connect(db_path, isolation_level=None)
        other.execute("BEGIN EXCLUSIVE")
        holding.set()
        time.sleep(1.5)  # fifteen times the busy timeout
        other.execute("COMMIT")
        other.close()

    holder = threading.Thread(target=hold_exclusive)
    holder.start()
    await trio.to_thread.run_sync(holding.wait)
    run = await sup.wait_run(handle.run_id)
    await trio.to_thread.run_sync(holder.join)
    assert run.status is RunStatus.SUCCESS
    log = await stored_events(store, handle.run_id)
    assert_gapless(log)
    assert len(log) == 403
    await sup.shutdown(0)


async def test_a_full_disk_fails_the_run_cleanly_and_the_server_stays_up(
    store: SQLiteStore, nursery: trio.Nursery
) -> None:
    sup = await start_supervisor(nursery, store)
    warm = await sup.create_run(RunRequest("echo", {"warm": True}))
    await sup.wait_run(warm.run_id)
    # SQLITE_FULL for real: the file may not grow past the pages it has now.
    writer = store._writer
    assert writer is not None
    pages = writer.execute("PRAGMA page_count").fetchone()[0]
    writer.execute(f"PRAGMA max_page_count = {pages}")
    handle = await sup.create_run(RunRequest("emitter", {"n": 5000}))
    events = await collect(sup, handle.run_id)
    run = await sup.wait_run(handle.run_id)
    # The stream ended with exactly one end; the run did not stay running in memory.
    assert [e.event for e in events].count("end") == 1
    assert run.status.terminal
    end = events[-1].value()
    assert run.status is RunStatus.ERROR or "error_details" in end
    # Room again: the server carries on, and the next run is whole.
    writer.execute("PRAGMA max_page_count = 1073741823")
    nxt = await sup.create_run(RunRequest("emitter", {"n": 10}))
    assert (await sup.wait_run(nxt.run_id)).status is RunStatus.SUCCESS
    assert_gapless(await stored_events(store, nxt.run_id))
    await sup.shutdown(0)


async def test_a_reconnect_storm_at_random_offsets_misses_nothing(
    server: Server, client: httpx.AsyncClient
) -> None:
    run = (
        await client.post(
            "/runs", json={"assistant_id": "emitter", "input": {"n": 1500, "delay": 0.001}}
        )
    ).json()
    path = f"/threads/{run['thread_id']}/runs/{run['run_id']}/stream"
    rng = random.Random(11)
    last_id = 1500 + 2
    limiter = trio.CapacityLimiter(50)
    checked = 0

    async def resume(offset: int) -> None:
        nonlocal checked
        await trio.sleep(rng.random() * 1.0)
        async with limiter:
            headers = {"Last-Event-ID": str(offset)}
            async with client.stream("GET", path, headers=headers) as response:
                text = "".join([chunk async for chunk in response.aiter_text()])
        ids = [f.id for f in parse_frames(text)[0]]
        if offset >= last_id:
            assert response.status_code == 204
        else:
            assert ids == list(range(offset + 1, last_id + 1)), offset
        checked += 1

    async with trio.open_nursery() as nursery:
        for _ in range(300):
            nursery.start_soon(resume, rng.randrange(0, last_id + 3))
    assert checked == 300
