"""The SQLite store: schema checks, a locked database, and reads of what was written."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest
import trio

from runyard.demo import demo_registry
from runyard.errors import StoreUnusable
from runyard.model import RunStatus
from runyard.store import SCHEMA_VERSION, SQLiteStore
from runyard.supervisor import RunRequest, Supervisor

from .helpers import assert_gapless, stored_events

pytestmark = pytest.mark.trio


async def test_reopening_keeps_the_data_and_the_schema(db_path: str) -> None:
    for _ in range(2):
        store = SQLiteStore(db_path)
        await store.open()
        await store.aclose()
    conn = sqlite3.connect(db_path)
    version = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    assert version == (str(SCHEMA_VERSION),)
    assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)


async def test_a_newer_schema_is_refused_and_left_untouched(db_path: str) -> None:
    store = SQLiteStore(db_path)
    await store.open()
    await store.aclose()
    conn = sqlite3.connect(db_path)
    conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    conn.commit()
    conn.close()
    before = Path(db_path).read_bytes()
    with pytest.raises(StoreUnusable, match="newer runyard"):
        await SQLiteStore(db_path).open()
    assert Path(db_path).read_bytes() == before


async def test_a_corrupt_file_is_refused_and_left_untouched(db_path: str) -> None:
    garbage = b"this is not a database, whatever its name says" * 100
    Path(db_path).write_bytes(garbage)
    with pytest.raises(StoreUnusable, match="not a usable runyard database"):
        await SQLiteStore(db_path).open()
    assert Path(db_path).read_bytes() == garbage


async def test_a_foreign_database_is_refused(db_path: str) -> None:
    conn = sqlite3.connect(db_path)
    conn.execute("CREATE TABLE customers (id INTEGER)")
    conn.commit()
    conn.close()
    with pytest.raises(StoreUnusable, match="did not create"):
        await SQLiteStore(db_path).open()


async def test_a_lock_held_for_two_seconds_is_ridden_out(
    store: SQLiteStore, nursery: trio.Nursery, db_path: str
) -> None:
    sup = Supervisor(store, demo_registry())
    await nursery.start(sup.serve)
    locked = threading.Event()

    def hold_lock() -> None:
        other = sqlite3.connect(db_path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        locked.set()
        time.sleep(2.0)
        other.execute("COMMIT")
        other.close()

    holder = threading.Thread(target=hold_lock)
    holder.start()
    await trio.to_thread.run_sync(locked.wait)
    try:
        handle = await sup.create_run(RunRequest("emitter", {"n": 20}))
        run = await sup.wait_run(handle.run_id)
    finally:
        await trio.to_thread.run_sync(holder.join)
    assert run.status is RunStatus.SUCCESS
    stored = await store.get_run(handle.run_id)
    assert stored is not None
    assert stored.status is RunStatus.SUCCESS
    assert_gapless(await stored_events(store, handle.run_id))
    await sup.shutdown(0)


async def test_purge_deletes_old_finished_runs_in_batches_and_keeps_the_rest(
    store: SQLiteStore, nursery: trio.Nursery
) -> None:
    sup = Supervisor(store, demo_registry())
    await nursery.start(sup.serve)
    done = [await sup.create_run(RunRequest("emitter", {"n": 3})) for _ in range(7)]
    for h in done:
        await sup.wait_run(h.run_id)
    live = await sup.create_run(RunRequest("sleepy", {"delay": 60}))
    cutoff = time.time() + 1
    assert await store.purge(cutoff, batch=3) == 7
    for h in done:
        assert await store.get_run(h.run_id) is None
        assert await stored_events(store, h.run_id) == []
    assert await store.get_run(live.run_id) is not None
    await sup.shutdown(0)
