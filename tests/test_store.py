"""The SQLite store: the schema, a locked database, and reads of what was written."""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from runyard.errors import StoreError, StoreUnusable
from runyard.model import (
    CancelReason,
    Cron,
    ErrorInfo,
    MultitaskStrategy,
    Run,
    RunRequest,
    RunStatus,
    Thread,
    ThreadStatus,
)
from runyard.store import SCHEMA_VERSION, Batch, SQLiteStore, retry

from .helpers import assert_gapless, start_supervisor, stored_events

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
    sup = await start_supervisor(nursery, store)
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
    sup = await start_supervisor(nursery, store)
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


# -- the schema -----------------------------------------------------------------

# Schema 1 as every existing database holds it: (name, type, not null, primary key).
SCHEMA_1 = {
    "threads": [
        ("thread_id", "TEXT", 0, 1),
        ("owner", "TEXT", 0, 0),
        ("created_at", "REAL", 0, 0),
        ("updated_at", "REAL", 0, 0),
        ("metadata", "TEXT", 0, 0),
        ("status", "TEXT", 0, 0),
        ("state", "TEXT", 0, 0),
    ],
    "runs": [
        ("run_id", "TEXT", 0, 1),
        ("thread_id", "TEXT", 0, 0),
        ("owner", "TEXT", 0, 0),
        ("assistant_id", "TEXT", 0, 0),
        ("created_at", "REAL", 0, 0),
        ("updated_at", "REAL", 0, 0),
        ("status", "TEXT", 0, 0),
        ("cancel_reason", "TEXT", 0, 0),
        ("error", "TEXT", 0, 0),
        ("output", "TEXT", 0, 0),
        ("metadata", "TEXT", 0, 0),
        ("kwargs", "TEXT", 0, 0),
        ("multitask_strategy", "TEXT", 0, 0),
        ("attempt", "INTEGER", 0, 0),
    ],
    "events": [
        ("run_id", "TEXT", 1, 1),
        ("seq", "INTEGER", 1, 2),
        ("event", "TEXT", 1, 0),
        ("data", "TEXT", 1, 0),
    ],
    "meta": [("key", "TEXT", 0, 1), ("value", "TEXT", 0, 0)],
}

# The statements that wrote schema 1 before the tables were described (via sqlite-utils).
SCHEMA_1_SQL = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE "threads" ("thread_id" TEXT PRIMARY KEY, "owner" TEXT, "created_at" REAL,
    "updated_at" REAL, "metadata" TEXT, "status" TEXT, "state" TEXT);
CREATE TABLE "runs" ("run_id" TEXT PRIMARY KEY, "thread_id" TEXT, "owner" TEXT,
    "assistant_id" TEXT, "created_at" REAL, "updated_at" REAL, "status" TEXT,
    "cancel_reason" TEXT, "error" TEXT, "output" TEXT, "metadata" TEXT, "kwargs" TEXT,
    "multitask_strategy" TEXT, "attempt" INTEGER);
CREATE INDEX "idx_runs_thread_id_created_at" ON "runs" ("thread_id", "created_at");
CREATE INDEX "idx_runs_status" ON "runs" ("status");
CREATE TABLE events (run_id TEXT NOT NULL, seq INTEGER NOT NULL, event TEXT NOT NULL,
    data TEXT NOT NULL, PRIMARY KEY (run_id, seq)) WITHOUT ROWID;
INSERT INTO meta VALUES ('schema_version', '1');
"""


# What schema 2 added: pending interrupts on threads, and these tables.
SCHEMA_2_TABLES = {
    "checkpoints",
    "checkpoint_blobs",
    "checkpoint_writes",
    "assistants",
    "assistant_versions",
    "items",
}
SCHEMA_2_INDEXES = ["idx_assistants_owner_graph_id", "idx_checkpoints_run_id"]
# What schema 3 added: crons and the webhook outbox.
SCHEMA_3_TABLES = {"crons", "webhooks", "webhook_attempts"}
SCHEMA_3_INDEXES = [
    "idx_crons_next_run_at", "idx_crons_owner_created_at", "idx_webhooks_state_next_attempt_at"
]  # fmt: skip


def _columns(conn: sqlite3.Connection, table: str) -> list[tuple[str, str, int, int]]:
    info = conn.execute(f"PRAGMA table_info({table})").fetchall()
    return [(name, kind, notnull, pk) for _, name, kind, notnull, _, pk in info]


def _tables_and_indexes(conn: sqlite3.Connection) -> tuple[set[str], list[str]]:
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    indexes = conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
    )
    return tables, sorted(r[0] for r in indexes)


async def test_migrating_a_fresh_file_creates_the_columns_keys_and_indexes_of_schema_3(
    store: SQLiteStore, db_path: str
) -> None:
    conn = sqlite3.connect(db_path)
    tables, indexes = _tables_and_indexes(conn)
    assert tables == set(SCHEMA_1) | SCHEMA_2_TABLES | SCHEMA_3_TABLES
    for table, columns in SCHEMA_1.items():
        added = [("interrupts", "TEXT", 0, 0)] if table == "threads" else []
        assert _columns(conn, table) == columns + added
    assert [c for c in _columns(conn, "checkpoints") if c[3]] == [
        ("thread_id", "TEXT", 1, 1),
        ("checkpoint_ns", "TEXT", 1, 2),
        ("checkpoint_id", "TEXT", 1, 3),
    ]
    assert indexes == sorted(
        ["idx_runs_status", "idx_runs_thread_id_created_at", *SCHEMA_2_INDEXES, *SCHEMA_3_INDEXES]
    )
    assert conn.execute("PRAGMA index_info(idx_runs_thread_id_created_at)").fetchall() == [
        (0, 1, "thread_id"),
        (1, 4, "created_at"),
    ]
    events = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'events'").fetchone()[0]
    assert events.endswith("WITHOUT ROWID")


async def test_a_database_written_by_schema_1_is_upgraded_in_place_and_reads_back(
    db_path: str, tmp_path: Path
) -> None:
    conn = sqlite3.connect(db_path, isolation_level=None)
    conn.executescript(SCHEMA_1_SQL)
    # The rows as the first schema's INSERTs wrote them, by position.
    conn.execute("INSERT INTO threads VALUES ('t', 'ann', 1.0, 2.0, '{}', 'busy', 'null')")
    conn.execute(
        "INSERT INTO runs VALUES ('r', 't', 'ann', 'echo', 1.0, 2.0, 'running', NULL, NULL,"
        """ 'null', '{"k":"v"}', '{}', 'enqueue', 1)"""
    )
    conn.execute("""INSERT INTO events VALUES ('r', 0, 'metadata', '{"run_id":"r"}')""")
    schema = conn.execute("SELECT * FROM sqlite_master").fetchall()
    store = SQLiteStore(db_path)
    await store.open()
    try:
        run = await store.get_run("r")
        thread = await store.get_thread("t")
        events = await store.read_events("r", -1, 10)
    finally:
        await store.aclose()
    assert run == Run(
        "r", "t", "echo", RunStatus.RUNNING, 1.0, 2.0, {"k": "v"}, {}, owner="ann", attempt=1
    )
    assert thread == Thread("t", 1.0, 2.0, {}, ThreadStatus.BUSY, None, owner="ann")
    assert [(e.seq, e.event, e.value()) for e in events] == [(0, "metadata", {"run_id": "r"})]
    # Schema 1's tables are kept as they were written; schemas 2 and 3 only add.
    assert set(conn.execute("SELECT * FROM sqlite_master").fetchall()) > {
        row for row in schema if row[1] != "threads"
    }
    assert conn.execute("SELECT value FROM meta").fetchone() == (str(SCHEMA_VERSION),)
    fresh = SQLiteStore(str(tmp_path / "fresh.sqlite3"))
    await fresh.open()
    await fresh.aclose()
    fresh_conn = sqlite3.connect(fresh.path)
    assert _tables_and_indexes(conn) == _tables_and_indexes(fresh_conn)
    for table in _tables_and_indexes(conn)[0]:
        assert _columns(conn, table) == _columns(fresh_conn, table)


async def test_a_database_written_by_schema_2_gains_crons_and_the_outbox_and_keeps_its_rows(
    db_path: str, tmp_path: Path
) -> None:
    # A schema 2 file: the newest one less what schema 3 added.
    written = SQLiteStore(db_path)
    await written.open()
    await written.put_thread(Thread("t", 1.0, 2.0, {"k": "v"}, owner="ann"))
    await written.aclose()
    conn = sqlite3.connect(db_path, isolation_level=None)
    for table in SCHEMA_3_TABLES:
        conn.execute(f"DROP TABLE {table}")
    conn.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")
    store = SQLiteStore(db_path)
    await store.open()
    try:
        thread = await store.get_thread("t")
        cron = Cron("c", "echo", None, "@daily", None, {}, {}, 1.0, 1.0, 86400.0, owner="ann")
        await store.put_cron(cron)
        assert await store.get_cron("c") == cron
    finally:
        await store.aclose()
    assert thread == Thread("t", 1.0, 2.0, {"k": "v"}, owner="ann")
    assert conn.execute("SELECT value FROM meta").fetchone() == ("3",)
    fresh = SQLiteStore(str(tmp_path / "fresh.sqlite3"))
    await fresh.open()
    await fresh.aclose()
    fresh_conn = sqlite3.connect(fresh.path)
    assert _tables_and_indexes(conn) == _tables_and_indexes(fresh_conn)
    for table in SCHEMA_3_TABLES:
        assert _columns(conn, table) == _columns(fresh_conn, table)


@pytest.mark.parametrize(
    "run",
    [
        Run(
            run_id="r-1",
            thread_id="t-1",
            assistant_id="agent",
            status=RunStatus.INTERRUPTED,
            created_at=1700000000.123456,
            updated_at=1700000001.5,
            metadata={"name": "Zoë 🚢", "nested": {"list": [1, 2.5, None, True]}},
            kwargs={"input": {"text": "日本語"}},
            multitask_strategy=MultitaskStrategy.ROLLBACK,
            cancel_reason=CancelReason.USER,
            error=ErrorInfo("AgentError", "non ascii: ✗"),
            output={"answer": "ja\nnein"},
            owner="ann",
            attempt=3,
        ),
        Run("r-2", "t-2", "agent", RunStatus.PENDING, 1.0, 1.0, {"ü": "ß"}),
    ],
    ids=["every-field-set", "no-cancel-reason-no-error"],
)
async def test_a_run_round_trips_every_field_through_its_row(store: SQLiteStore, run: Run) -> None:
    await store.commit(Batch(created=[(run, None)]))
    assert await store.get_run(run.run_id) == run


@pytest.mark.parametrize("values", [None, {"messages": ["héllo", {"emoji": "🙂"}]}])
async def test_a_thread_round_trips_every_field_through_its_row(
    store: SQLiteStore, values: object
) -> None:
    thread = Thread("t-1", 1.25, 2.5, {"tag": "naïve"}, ThreadStatus.INTERRUPTED, values, "bob")
    await store.put_thread(thread)
    assert await store.get_thread("t-1") == thread


# -- a busy database ------------------------------------------------------------

BOUND = 0.3  # seconds: the busy bound the tests below shrink BUSY_RETRY_SECONDS to


@contextlib.contextmanager
def _locked(path: str) -> Iterator[None]:
    """Hold ``path``'s lock from another connection for the length of the block."""
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    try:
        yield
    finally:
        other.execute("ROLLBACK")
        other.close()


async def test_a_write_that_stays_busy_past_the_bound_raises_store_error_and_writes_nothing(
    store: SQLiteStore, db_path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(retry, "BUSY_RETRY_SECONDS", BOUND)
    start = trio.current_time()
    with _locked(db_path), pytest.raises(StoreError, match="stayed locked; write abandoned"):
        await store.put_thread(Thread("t", 1.0, 1.0))
    assert trio.current_time() - start >= BOUND
    assert await store.get_thread("t") is None


async def test_a_read_that_stays_busy_past_the_bound_raises_store_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Under WAL (the store's mode) a writer never blocks a reader; with a
    # rollback journal BEGIN EXCLUSIVE keeps every read out, so the read stays busy.
    path = str(tmp_path / "rollback-journal.sqlite3")
    setup = sqlite3.connect(path, isolation_level=None)
    setup.execute("CREATE TABLE t (x)")
    setup.close()
    reader = sqlite3.connect(path, check_same_thread=False, timeout=0)
    monkeypatch.setattr(retry, "BUSY_RETRY_SECONDS", BOUND)
    start = trio.current_time()
    with _locked(path), pytest.raises(StoreError, match="stayed locked; read abandoned"):
        await retry.retry_busy(
            trio.CapacityLimiter(1),
            lambda: reader.execute("SELECT x FROM t").fetchall(),
            action="read",
        )
    assert trio.current_time() - start >= BOUND
    reader.close()


async def test_a_deadline_ends_the_retries_of_a_busy_write_long_before_the_bound(
    store: SQLiteStore, db_path: str
) -> None:
    start = trio.current_time()
    with _locked(db_path), trio.move_on_after(BOUND) as scope:
        await store.put_thread(Thread("t", 1.0, 1.0))
    assert scope.cancelled_caught
    assert trio.current_time() - start < retry.BUSY_RETRY_SECONDS / 2
    assert await store.get_thread("t") is None
