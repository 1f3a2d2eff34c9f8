"""Persistence: the :class:`Store` interface and its SQLite implementation.

The supervisor and the event log talk to a :class:`Store`; nothing else does.
:class:`SQLiteStore` keeps two connections, one for writes and one for reads,
each used from one worker thread at a time (a ``CapacityLimiter(1)``), so
the trio loop never blocks on the disk and WAL lets reads go on during a
write. Every write transaction starts with ``BEGIN IMMEDIATE``, so a lock
held by another process shows up at once as ``SQLITE_BUSY`` and is retried
here with a bounded back-off instead of failing half way.
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import logging
import os
import sqlite3
import time
from collections.abc import Callable, Iterable
from typing import Any, Protocol, TypeVar

import sqlite_utils
import trio
import trio.lowlevel

from .errors import StoreError, StoreUnusable
from .model import (
    JSON,
    CancelReason,
    ErrorInfo,
    Event,
    MultitaskStrategy,
    Run,
    RunStatus,
    Thread,
    ThreadStatus,
    dumps,
)

log = logging.getLogger("runyard.store")

T = TypeVar("T")

SCHEMA_VERSION = 1
# Short, so one attempt never outlives a cleanup deadline: the retry loop
# below waits between attempts in trio, where a deadline can interrupt it.
BUSY_TIMEOUT_MS = 100
# How long a write keeps retrying a locked database before it gives up.
BUSY_RETRY_SECONDS = 15.0
BACKOFF_START = 0.01
BACKOFF_MAX = 0.25


@dataclasses.dataclass(slots=True)
class FinalState:
    """Everything the end of one run writes, in one transaction."""

    run_id: str
    thread_id: str
    status: RunStatus
    cancel_reason: CancelReason | None
    error: ErrorInfo | None
    output: JSON
    updated_at: float
    events: list[Event]  # the run's last events, ``end`` included
    thread_status: ThreadStatus | None  # None: leave the thread as it is
    delete: bool = False  # rollback: remove the run and its events instead


@dataclasses.dataclass(slots=True)
class Batch:
    """What one transaction writes, applied in this order."""

    created: list[tuple[Run, Thread | None]] = dataclasses.field(default_factory=list)
    """New pending runs, each with the new thread to insert first (or None), the
    thread then marked busy."""
    events: list[Event] = dataclasses.field(default_factory=list)
    running: list[tuple[str, float]] = dataclasses.field(default_factory=list)
    """(run id, time) of runs that are now running."""
    finals: list[FinalState] = dataclasses.field(default_factory=list)


class Store(Protocol):
    """What runyard needs from a database. A PostgreSQL store implements this too."""

    async def aclose(self) -> None: ...

    async def put_thread(self, thread: Thread) -> None: ...
    async def get_thread(self, thread_id: str) -> Thread | None: ...
    async def search_threads(
        self, *, owner: str, metadata: dict[str, JSON], status: str | None, limit: int, offset: int
    ) -> list[Thread]: ...
    async def delete_thread(self, thread_id: str) -> None: ...

    async def get_run(self, run_id: str) -> Run | None: ...
    async def list_runs(
        self,
        thread_id: str | None,
        *,
        status: str | None,
        limit: int,
        offset: int,
        owner: str | None = None,
    ) -> list[Run]:
        """Runs newest first: of one thread, or of every thread when ``thread_id`` is None."""

    async def unfinished_runs(self) -> list[Run]: ...
    async def delete_run(self, run_id: str) -> None: ...
    async def purge(self, before: float, *, batch: int = 200) -> int: ...

    async def read_events(self, run_id: str, after_seq: int, limit: int) -> list[Event]: ...
    async def last_seq(self, run_id: str) -> int: ...
    async def commit(self, batch: Batch) -> None:
        """Write the batch in one transaction (all of it or, raising, none)."""


def _connect(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=0)
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    return conn


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
    text = str(exc)
    return "locked" in text or "busy" in text


def _migrate_1(db: sqlite_utils.Database) -> None:
    db.table("threads").create(
        {
            "thread_id": str,
            "owner": str,
            "created_at": float,
            "updated_at": float,
            "metadata": str,
            "status": str,
            "state": str,
        },
        pk="thread_id",
    )
    db.table("runs").create(
        {
            "run_id": str,
            "thread_id": str,
            "owner": str,
            "assistant_id": str,
            "created_at": float,
            "updated_at": float,
            "status": str,
            "cancel_reason": str,
            "error": str,
            "output": str,
            "metadata": str,
            "kwargs": str,
            "multitask_strategy": str,
            "attempt": int,
        },
        pk="run_id",
    )
    db.table("runs").create_index(["thread_id", "created_at"])
    db.table("runs").create_index(["status"])
    db.execute(
        "CREATE TABLE events (run_id TEXT NOT NULL, seq INTEGER NOT NULL, event TEXT NOT NULL,"
        " data TEXT NOT NULL, PRIMARY KEY (run_id, seq)) WITHOUT ROWID"
    )


MIGRATIONS: list[Callable[[sqlite_utils.Database], None]] = [_migrate_1]
assert len(MIGRATIONS) == SCHEMA_VERSION


def _row_to_thread(row: dict[str, Any]) -> Thread:
    return Thread(
        thread_id=row["thread_id"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        metadata=json.loads(row["metadata"]),
        status=ThreadStatus(row["status"]),
        values=json.loads(row["state"]),
        owner=row["owner"],
    )


def _row_to_run(row: dict[str, Any]) -> Run:
    error = json.loads(row["error"]) if row["error"] else None
    return Run(
        run_id=row["run_id"],
        thread_id=row["thread_id"],
        assistant_id=row["assistant_id"],
        status=RunStatus(row["status"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        metadata=json.loads(row["metadata"]),
        kwargs=json.loads(row["kwargs"]),
        multitask_strategy=MultitaskStrategy(row["multitask_strategy"]),
        cancel_reason=CancelReason(row["cancel_reason"]) if row["cancel_reason"] else None,
        error=ErrorInfo(**error) if error else None,
        output=json.loads(row["output"]),
        owner=row["owner"],
        attempt=row["attempt"],
    )


def _event_rows(events: Iterable[Event]) -> list[tuple[str, int, str, str]]:
    return [(e.run_id, e.seq, e.event, e.data) for e in events]


class SQLiteStore:
    """The embedded default :class:`Store`: one SQLite file in WAL mode."""

    def __init__(self, path: str, *, synchronous: str = "NORMAL", exclusive: bool = False) -> None:
        self.path = path
        self._synchronous = synchronous
        self._exclusive = exclusive  # hold PATH.lock: one server process per database
        self._lock_file: int | None = None
        self._writer: sqlite3.Connection | None = None
        self._reader: sqlite3.Connection | None = None
        self._reader_db: sqlite_utils.Database | None = None  # wraps _reader, made once
        self._write_limiter = trio.CapacityLimiter(1)
        self._read_limiter = trio.CapacityLimiter(1)
        self.closed = False

    # -- lifetime ---------------------------------------------------------

    async def open(self) -> None:
        """Open (creating or migrating) the database; raise :class:`StoreUnusable`."""
        await trio.to_thread.run_sync(self._open_sync)

    def _open_sync(self) -> None:
        directory = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(directory, exist_ok=True)
        if self._exclusive:
            self._take_lock()
        try:
            writer = _connect(self.path)
            writer.execute("PRAGMA journal_mode = WAL").fetchone()
            writer.execute(f"PRAGMA synchronous = {self._synchronous}")
            self._writer = writer
            self._retry_sync(self._migrate_sync)
            reader = _connect(self.path)
            reader.execute("PRAGMA query_only = 1")
            self._reader = reader
            self._reader_db = sqlite_utils.Database(reader)
        except StoreUnusable:
            self._close_sync()
            raise
        except sqlite3.DatabaseError as exc:
            self._close_sync()
            raise StoreUnusable(
                f"{self.path} is not a usable runyard database ({exc.__class__.__name__});"
                " it was left untouched"
            ) from exc

    def _take_lock(self) -> None:
        """Own ``PATH.lock`` for this process's lifetime; the OS frees it if we die."""
        fd = os.open(self.path + ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise StoreUnusable(
                f"{self.path} is in use by another runyard process (pid {holder});"
                " stop it first or use another --db"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._lock_file = fd

    def _migrate_sync(self) -> None:
        conn = self._conn()
        db = sqlite_utils.Database(conn)
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
            row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            version = int(row[0]) if row else 0
            if version == 0 and set(db.table_names()) - {"meta"}:
                raise StoreUnusable(
                    f"{self.path} holds tables that runyard did not create; it was left untouched"
                )
            if version > SCHEMA_VERSION:
                raise StoreUnusable(
                    f"{self.path} was written by a newer runyard (schema {version}, this one"
                    f" knows {SCHEMA_VERSION}); upgrade runyard or use another --db"
                )
            for migration in MIGRATIONS[version:]:
                migration(db)
            conn.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', ?)",
                (str(SCHEMA_VERSION),),
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    async def aclose(self) -> None:
        """Close both connections, after any write in flight has finished."""
        if self.closed:
            return
        with trio.CancelScope(shield=True):
            async with self._write_limiter, self._read_limiter:
                self._close_sync()

    def _close_sync(self) -> None:
        self.closed = True
        for conn in (self._reader, self._writer):
            if conn is not None:
                conn.close()
        self._reader = self._writer = None
        self._reader_db = None
        if self._lock_file is not None:
            os.close(self._lock_file)  # releases the flock
            self._lock_file = None

    def _conn(self) -> sqlite3.Connection:
        if self._writer is None:
            raise StoreError("the database is closed")
        return self._writer

    # -- plumbing -----------------------------------------------------------

    def _retry_sync(self, fn: Callable[[], T]) -> T:
        """Retry ``fn`` on a busy database; only for open, before trio is involved."""
        deadline = time.monotonic() + BUSY_RETRY_SECONDS
        delay = BACKOFF_START
        while True:
            try:
                return fn()
            except sqlite3.OperationalError as exc:
                if not _is_busy(exc) or time.monotonic() > deadline:
                    raise
            time.sleep(delay)
            delay = min(delay * 2, BACKOFF_MAX)

    async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` in one ``BEGIN IMMEDIATE`` transaction on the writer thread.

        A busy database is retried with back-off for up to
        :data:`BUSY_RETRY_SECONDS`; the waits are trio sleeps, so an enclosing
        deadline ends the retries. Any other database error is raised as
        :class:`StoreError` after the transaction was rolled back.
        """

        def transaction() -> T:
            conn = self._conn()
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = fn(conn)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            return result

        delay = BACKOFF_START
        give_up = trio.current_time() + BUSY_RETRY_SECONDS
        while True:
            try:
                async with self._write_limiter:
                    return await trio.to_thread.run_sync(transaction)
            except sqlite3.OperationalError as exc:
                if not _is_busy(exc):
                    raise StoreError(f"database write failed: {exc}") from exc
                if trio.current_time() > give_up:
                    raise StoreError("database stayed locked; write abandoned") from exc
                log.info("store.busy", extra={"retry_in": delay})
            except sqlite3.DatabaseError as exc:
                raise StoreError(f"database write failed: {exc}") from exc
            await trio.sleep(delay)
            delay = min(delay * 2, BACKOFF_MAX)

    async def _read(self, fn: Callable[[sqlite_utils.Database], T]) -> T:
        def run() -> T:
            if self._reader_db is None:
                raise StoreError("the database is closed")
            return fn(self._reader_db)

        delay = BACKOFF_START
        while True:
            try:
                async with self._read_limiter:
                    return await trio.to_thread.run_sync(run)
            except sqlite3.OperationalError as exc:
                if not _is_busy(exc):
                    raise StoreError(f"database read failed: {exc}") from exc
            await trio.sleep(delay)
            delay = min(delay * 2, BACKOFF_MAX)

    # -- threads --------------------------------------------------------------

    async def put_thread(self, thread: Thread) -> None:
        row = _thread_row(thread)
        await self._write(lambda c: c.execute(INSERT_THREAD, row))

    async def get_thread(self, thread_id: str) -> Thread | None:
        def get(db: sqlite_utils.Database) -> Thread | None:
            rows = list(db.table("threads").rows_where("thread_id = ?", [thread_id]))
            return _row_to_thread(rows[0]) if rows else None

        return await self._read(get)

    async def search_threads(
        self, *, owner: str, metadata: dict[str, JSON], status: str | None, limit: int, offset: int
    ) -> list[Thread]:
        def search(db: sqlite_utils.Database) -> list[Thread]:
            where, args = "owner = ?", [owner]
            if status is not None:
                where += " AND status = ?"
                args.append(status)
            found: list[Thread] = []
            skipped = 0
            for row in db.table("threads").rows_where(where, args, order_by="created_at DESC"):
                thread = _row_to_thread(row)
                if any(thread.metadata.get(k, _MISSING) != v for k, v in metadata.items()):
                    continue
                if skipped < offset:
                    skipped += 1
                    continue
                found.append(thread)
                if len(found) >= limit:
                    break
            return found

        return await self._read(search)

    async def delete_thread(self, thread_id: str) -> None:
        def delete(c: sqlite3.Connection) -> None:
            c.execute(
                "DELETE FROM events WHERE run_id IN (SELECT run_id FROM runs WHERE thread_id = ?)",
                (thread_id,),
            )
            c.execute("DELETE FROM runs WHERE thread_id = ?", (thread_id,))
            c.execute("DELETE FROM threads WHERE thread_id = ?", (thread_id,))

        await self._write(delete)

    # -- runs -----------------------------------------------------------------

    async def get_run(self, run_id: str) -> Run | None:
        def get(db: sqlite_utils.Database) -> Run | None:
            rows = list(db.table("runs").rows_where("run_id = ?", [run_id]))
            return _row_to_run(rows[0]) if rows else None

        return await self._read(get)

    async def list_runs(
        self,
        thread_id: str | None,
        *,
        status: str | None,
        limit: int,
        offset: int,
        owner: str | None = None,
    ) -> list[Run]:
        clauses: list[str] = []
        args: list[Any] = []
        for column, value in (("thread_id", thread_id), ("status", status), ("owner", owner)):
            if value is not None:
                clauses.append(f"{column} = ?")
                args.append(value)
        where = " AND ".join(clauses) or None

        def query(db: sqlite_utils.Database) -> list[Run]:
            rows = db.table("runs").rows_where(
                where, args, order_by="created_at DESC", limit=limit, offset=offset
            )
            return [_row_to_run(r) for r in rows]

        return await self._read(query)

    async def unfinished_runs(self) -> list[Run]:
        def query(db: sqlite_utils.Database) -> list[Run]:
            rows = db.table("runs").rows_where(
                "status IN ('pending', 'running')", order_by="created_at"
            )
            return [_row_to_run(r) for r in rows]

        return await self._read(query)

    async def delete_run(self, run_id: str) -> None:
        def delete(c: sqlite3.Connection) -> None:
            c.execute("DELETE FROM events WHERE run_id = ?", (run_id,))
            c.execute("DELETE FROM runs WHERE run_id = ?", (run_id,))

        await self._write(delete)

    async def purge(self, before: float, *, batch: int = 200) -> int:
        """Delete finished runs last updated before ``before``, and their events.

        Works in small transactions, so writers are never held up for long.
        Returns how many runs were deleted.
        """

        def one_batch(c: sqlite3.Connection) -> int:
            ids = [
                row[0]
                for row in c.execute(
                    "SELECT run_id FROM runs WHERE status NOT IN ('pending', 'running')"
                    " AND updated_at < ? LIMIT ?",
                    (before, batch),
                )
            ]
            marks = ",".join("?" * len(ids))
            if ids:
                c.execute(f"DELETE FROM events WHERE run_id IN ({marks})", ids)
                c.execute(f"DELETE FROM runs WHERE run_id IN ({marks})", ids)
            return len(ids)

        total = 0
        while True:
            deleted = await self._write(one_batch)
            total += deleted
            if deleted < batch:
                return total
            await trio.lowlevel.checkpoint()  # let queued writers in between batches

    # -- events ---------------------------------------------------------------

    async def read_events(self, run_id: str, after_seq: int, limit: int) -> list[Event]:
        def query(db: sqlite_utils.Database) -> list[Event]:
            cursor = db.execute(
                "SELECT seq, event, data FROM events WHERE run_id = ? AND seq > ?"
                " ORDER BY seq LIMIT ?",
                (run_id, after_seq, limit),
            )
            return [Event.from_text(run_id, seq, ev, data) for seq, ev, data in cursor]

        return await self._read(query)

    async def last_seq(self, run_id: str) -> int:
        def query(db: sqlite_utils.Database) -> int:
            row = db.execute("SELECT MAX(seq) FROM events WHERE run_id = ?", (run_id,)).fetchone()
            return -1 if row[0] is None else int(row[0])

        return await self._read(query)

    async def commit(self, batch: Batch) -> None:
        thread_rows = [_thread_row(t) for _, t in batch.created if t is not None]
        run_rows = [_run_row(r) for r, _ in batch.created]
        busy_rows = [(r.created_at, r.thread_id) for r, _ in batch.created]
        event_rows = _event_rows(batch.events)
        running_rows = [(at, run_id) for run_id, at in batch.running]
        finals = batch.finals

        def write(c: sqlite3.Connection) -> None:
            c.executemany(INSERT_THREAD, thread_rows)
            c.executemany(f"INSERT INTO runs VALUES ({', '.join('?' * 14)})", run_rows)
            c.executemany(
                "UPDATE threads SET status = 'busy', updated_at = ? WHERE thread_id = ?", busy_rows
            )
            c.executemany("INSERT OR IGNORE INTO events VALUES (?, ?, ?, ?)", event_rows)
            c.executemany(
                "UPDATE runs SET status = 'running', updated_at = ? WHERE run_id = ?", running_rows
            )
            for f in finals:
                if f.delete:
                    c.execute("DELETE FROM events WHERE run_id = ?", (f.run_id,))
                    c.execute("DELETE FROM runs WHERE run_id = ?", (f.run_id,))
                else:
                    c.executemany(
                        "INSERT OR IGNORE INTO events VALUES (?, ?, ?, ?)", _event_rows(f.events)
                    )
                    c.execute(
                        "UPDATE runs SET status = ?, cancel_reason = ?, error = ?, output = ?,"
                        " updated_at = ? WHERE run_id = ?",
                        (
                            str(f.status),
                            None if f.cancel_reason is None else str(f.cancel_reason),
                            None if f.error is None else dumps(f.error.to_json()),
                            dumps(f.output),
                            f.updated_at,
                            f.run_id,
                        ),
                    )
                if f.thread_status is None:
                    continue
                if f.status is RunStatus.SUCCESS and not f.delete:
                    c.execute(
                        "UPDATE threads SET status = ?, state = ?, updated_at = ?"
                        " WHERE thread_id = ?",
                        (str(f.thread_status), dumps(f.output), f.updated_at, f.thread_id),
                    )
                else:
                    c.execute(
                        "UPDATE threads SET status = ?, updated_at = ? WHERE thread_id = ?",
                        (str(f.thread_status), f.updated_at, f.thread_id),
                    )

        await self._write(write)


_MISSING = object()
INSERT_THREAD = "INSERT OR REPLACE INTO threads VALUES (?, ?, ?, ?, ?, ?, ?)"


def _run_row(run: Run) -> tuple[str | float | None, ...]:
    return (
        run.run_id,
        run.thread_id,
        run.owner,
        run.assistant_id,
        run.created_at,
        run.updated_at,
        str(run.status),
        None,
        None,
        dumps(None),
        dumps(run.metadata),
        dumps(run.kwargs),
        str(run.multitask_strategy),
        run.attempt,
    )


def _thread_row(thread: Thread) -> tuple[str | float, ...]:
    return (
        thread.thread_id,
        thread.owner,
        thread.created_at,
        thread.updated_at,
        dumps(thread.metadata),
        str(thread.status),
        dumps(thread.values),
    )
