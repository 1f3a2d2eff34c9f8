"""The SQLite file under every :class:`~runyard.store.SQLiteStore`: connections, threads, lifetime.

:class:`SQLiteBase` keeps two connections, one for writes and one for reads,
each used from one worker thread at a time (a ``CapacityLimiter(1)``), so the
trio loop never blocks on the disk and WAL lets reads go on during a write.
A small write (a batch of events and checkpoints, see
:meth:`SQLiteBase._write`) runs on trio's own thread instead: in WAL mode
with ``synchronous=NORMAL`` a commit appends to the WAL without waiting for
the disk, and two thread hand-offs cost more than the write (measured in
docs/benchmarks.md). So does a point read (one thread's owner, one
checkpoint: ``_read(..., point=True)``), which the page cache answers in
microseconds. Checkpoints, which do wait for the disk, are taken out
of the commits (``wal_autocheckpoint`` is off): every
:data:`CHECKPOINT_EVERY_BYTES` written one starts on a third connection, in
a thread of its own, and commits go on meanwhile (a passive checkpoint
blocks no writer; one that held the writer up stalled every stream for
~0.5 s).
Every write transaction starts with ``BEGIN IMMEDIATE``, so a lock held by
another process shows up at once as ``SQLITE_BUSY``; reads and writes alike
are retried with the bounded back-off of :mod:`.retry`, so a write never
fails half way and a read never waits for ever.

Cancellation: an operation cancelled while it waits for its connection or
between two attempts raises ``trio.Cancelled`` and has written nothing; one
cancelled during an attempt finishes that attempt first (a write commits or
rolls back whole). :meth:`SQLiteBase.aclose` is shielded: it always waits
for the operation and the checkpoint in flight and closes the connections.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import sqlite3
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import trio
import trio.lowlevel

from ..errors import StoreError, StoreUnusable
from .retry import BUSY_TIMEOUT_MS, retry_busy, retry_busy_sync
from .schema import migrate

if TYPE_CHECKING:
    import outcome

T = TypeVar("T")
log = logging.getLogger("runyard.store")

# A write of at most this many bytes runs on trio's thread (see the module's docstring):
# about a millisecond at most (a chat turn's state and its values event, both
# ~100 KiB at 100 messages, are one such write); 1 MiB took ~8 ms.
INLINE_WRITE_BYTES = 256 * 1024
# Bytes written between two WAL checkpoints (SQLite's automatic one: 1,000 pages).
CHECKPOINT_EVERY_BYTES = 4 * 1024 * 1024


def _connect(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=0)
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    return conn


def closing_scan(db: sqlite3.Connection, query: str, args: list[Any]) -> contextlib.closing[Any]:
    """The query's rows as they are read; closing ends the read at once when left early."""
    return contextlib.closing(db.execute(query, args))


def sqlite_one_of(column: str, values: Sequence[str]) -> tuple[str, list[str]]:
    """SQLite's :data:`~.interface.OneOf`."""
    return f"{column} IN ({', '.join('?' * len(values))})", list(values)


class SQLiteBase:
    """One SQLite file in WAL mode: its connections, their threads, its lifetime."""

    def __init__(self, path: str, *, synchronous: str = "NORMAL", exclusive: bool = False) -> None:
        self.path = path
        self._synchronous = synchronous
        self._exclusive = exclusive  # hold PATH.lock: one server process per database
        self._lock_file: int | None = None
        self._writer: sqlite3.Connection | None = None
        self._reader: sqlite3.Connection | None = None
        self._checkpointer: sqlite3.Connection | None = None
        self._checkpoint_idle = threading.Event()  # clear while a checkpoint runs
        self._checkpoint_idle.set()
        self._write_limiter = trio.CapacityLimiter(1)
        self._read_limiter = trio.CapacityLimiter(1)
        self._unchecked = 0  # bytes written since the last WAL checkpoint (about)
        self.closed = False

    # -- lifetime ---------------------------------------------------------------

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
            writer.execute("PRAGMA wal_autocheckpoint = 0")  # see _write
            self._writer = writer
            retry_busy_sync(lambda: migrate(writer, self.path))
            reader = _connect(self.path)
            reader.execute("PRAGMA query_only = 1")
            self._reader = reader
            self._checkpointer = _connect(self.path)
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

    async def aclose(self) -> None:
        """Close the connections, after any read, write or checkpoint in flight has finished."""
        if self.closed:
            return
        with trio.CancelScope(shield=True):
            async with self._write_limiter, self._read_limiter:
                await trio.to_thread.run_sync(self._checkpoint_idle.wait)
                self._close_sync()

    def _close_sync(self) -> None:
        self.closed = True
        for conn in (self._reader, self._writer, self._checkpointer):
            if conn is not None:
                conn.close()
        self._reader = self._writer = self._checkpointer = None
        if self._lock_file is not None:
            os.close(self._lock_file)  # releases the flock
            self._lock_file = None

    # -- plumbing -------------------------------------------------------------

    async def _write(self, fn: Callable[[sqlite3.Connection], T], *, size: int | None = None) -> T:
        """Run ``fn`` in one ``BEGIN IMMEDIATE`` transaction on the writer's thread.

        ``size``: about how many bytes it writes; one of at most
        :data:`INLINE_WRITE_BYTES` runs on trio's thread (None: unknown, counted
        as that many). Every :data:`CHECKPOINT_EVERY_BYTES` a WAL checkpoint
        starts in the background (:meth:`_checkpoint_soon`). Raises :class:`StoreError` once the
        transaction was rolled back, for a database that stayed busy past the
        bound or any other database error.
        """

        def transaction() -> T:
            if self._writer is None:
                raise StoreError("the database is closed")
            conn = self._writer
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = fn(conn)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            return result

        inline = size is not None and size <= INLINE_WRITE_BYTES
        result = await retry_busy(self._write_limiter, transaction, action="write", inline=inline)
        self._unchecked += INLINE_WRITE_BYTES if size is None else size
        if self._unchecked >= CHECKPOINT_EVERY_BYTES:
            self._unchecked = 0
            self._checkpoint_soon()
        return result

    def _checkpoint_soon(self) -> None:
        """Copy the WAL's frames into the database on the checkpoint's own connection
        and thread, unless a checkpoint runs already; nothing waits for it.

        A passive checkpoint waits for no reader and blocks no writer: commits
        go on appending to the WAL meanwhile, and the next writer after it
        restarts the WAL from its beginning. :meth:`aclose` waits for it.
        """
        if not self._checkpoint_idle.is_set():
            return
        self._checkpoint_idle.clear()
        conn = self._checkpointer

        def checkpoint() -> None:
            assert conn is not None, "open() made it"
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()

        def finished(result: outcome.Outcome[None]) -> None:
            try:
                result.unwrap()
            except Exception as exc:  # the next one tries again
                log.warning("store.checkpoint_failed", extra={"error": type(exc).__name__})
            finally:
                self._checkpoint_idle.set()

        trio.lowlevel.start_thread_soon(checkpoint, finished)

    async def _read(self, fn: Callable[[sqlite3.Connection], T], *, point: bool = False) -> T:
        """Run ``fn`` on the reader's thread (``point``: a read of one row or one
        checkpoint, on trio's); errors as for :meth:`_write`."""

        def read() -> T:
            if self._reader is None:
                raise StoreError("the database is closed")
            return fn(self._reader)

        return await retry_busy(self._read_limiter, read, action="read", inline=point)
