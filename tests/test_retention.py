"""Data retention: old finished runs leave the store; a failing purge never stops the server."""

from __future__ import annotations

import sqlite3

import trio

from runyard.config import Settings
from runyard.errors import StoreError
from runyard.model import RunRequest, RunStatus
from runyard.store import SQLiteStore

from .helpers import start_supervisor

# Short enough for a test, long enough that a run finishes well inside it.
QUICK = Settings(data_retention=0.3, purge_interval=0.05, retention=0)


class _Purges(SQLiteStore):
    """A store that says when a purge deleted something; its first ``failing`` purges fail
    as when the database stays locked."""

    def __init__(self, path: str, failing: int = 0) -> None:
        super().__init__(path)
        self.failing = failing
        self.attempts = 0
        self.deleted = trio.Event()

    async def purge(self, before: float, *, batch: int = 200) -> int:
        self.attempts += 1
        if self.attempts <= self.failing:
            raise StoreError("database stayed locked; write abandoned")
        count = await super().purge(before, batch=batch)
        if count:
            self.deleted.set()
        return count


async def test_finished_runs_older_than_data_retention_leave_the_store(
    db_path: str, nursery: trio.Nursery
) -> None:
    store = _Purges(db_path)
    await store.open()
    try:
        sup = await start_supervisor(nursery, store, settings=QUICK)
        done = await sup.create_run(RunRequest("echo", {"v": 1}))
        await sup.wait_run(done.run_id)
        live = await sup.create_run(RunRequest("sleepy", {"delay": 60}))
        with trio.fail_after(5):
            await store.deleted.wait()
        assert await store.get_run(done.run_id) is None
        assert await store.read_events(done.run_id, -1, 10) == []
        still = await store.get_run(live.run_id)
        assert still is not None
        assert not still.status.terminal
        await sup.shutdown(0)
    finally:
        await store.aclose()


async def test_a_failing_purge_is_tried_again_and_the_server_keeps_serving(
    db_path: str, nursery: trio.Nursery
) -> None:
    store = _Purges(db_path, failing=2)
    await store.open()
    try:
        sup = await start_supervisor(nursery, store, settings=QUICK)
        first = await sup.create_run(RunRequest("echo", {"v": 1}))
        await sup.wait_run(first.run_id)
        with trio.fail_after(5):
            await store.deleted.wait()
        assert store.attempts > 2
        assert await store.get_run(first.run_id) is None
        handle = await sup.create_run(RunRequest("echo", {"after": "failures"}))
        assert (await sup.wait_run(handle.run_id)).status is RunStatus.SUCCESS
        await sup.shutdown(0)
    finally:
        await store.aclose()


async def test_expired_memory_items_leave_the_store_without_data_retention(
    db_path: str, nursery: trio.Nursery
) -> None:
    store = SQLiteStore(db_path)
    await store.open()
    try:
        await store.put_item("ann", ("notes",), "brief", {"v": 1}, ttl=0.001)  # 60 ms
        await store.put_item("ann", ("notes",), "kept", {"v": 2})
        sup = await start_supervisor(nursery, store, settings=Settings(purge_interval=0.05))
        with trio.fail_after(5):
            while True:
                rows = await store.search_items("ann", ("notes",), limit=10, offset=0)
                count = sqlite3.connect(db_path).execute("SELECT COUNT(*) FROM items").fetchone()
                if count == (1,):
                    break
                await trio.sleep(0.05)
        assert [item.key for item in rows] == ["kept"]
        await sup.shutdown(0)
    finally:
        await store.aclose()
