"""LangGraph checkpoints in runyard's store: reads here, writes with the run's batches.

A checkpoint is stored without its channel values; each channel's value is a
blob stored once per version (a step that changed two channels writes two
blobs), and reading a checkpoint gathers the blobs of the versions it names.
Checkpoints and pending writes are written through the group-commit writer
(:class:`~runyard.store.Batch`), so they commit in order with the run's
events; this part reads them, and deletes or copies a thread's.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Protocol

from .connection import SQLiteBase
from .interface import BlobRow, CheckpointRow, WriteRow
from .schema import CHECKPOINT_BLOBS, CHECKPOINT_WRITES, CHECKPOINTS


class CheckpointStore(Protocol):
    """Reading, deleting and copying the checkpoints a graph's saver wrote."""

    async def get_checkpoint(
        self, thread_id: str, checkpoint_ns: str, checkpoint_id: str | None
    ) -> CheckpointRow | None:
        """That checkpoint, or the thread's newest in the namespace when the id is None."""

    async def list_checkpoints(
        self,
        thread_id: str | None,
        checkpoint_ns: str | None,
        *,
        before: str | None = None,
        limit: int | None = None,
    ) -> list[CheckpointRow]:
        """Newest first; ``None`` for thread or namespace means any."""

    async def load_checkpoints(
        self,
        thread_id: str | None,
        checkpoint_ns: str | None,
        *,
        checkpoint_id: str | None = None,
        before: str | None = None,
        limit: int | None = None,
        versions_of: Callable[[CheckpointRow], dict[str, str]],
    ) -> list[LoadedCheckpoint]:
        """As :meth:`list_checkpoints` (or that one checkpoint), each with the blobs of
        the channel versions ``versions_of`` names (missing ones are left out) and its
        pending writes, by task and index: all in one read."""

    async def delete_checkpoints(
        self, *, thread_id: str | None = None, run_ids: list[str] | None = None
    ) -> None:
        """Delete a thread's checkpoints (blobs and writes too), or those some runs wrote."""

    async def copy_checkpoints(self, source: str, target: str) -> None:
        """Copy every checkpoint, blob and write of thread ``source`` to thread ``target``."""


# A checkpoint with its channels' blobs and its pending writes.
LoadedCheckpoint = tuple[CheckpointRow, list[BlobRow], list[WriteRow]]

_PUT_CHECKPOINT = CHECKPOINTS.insert("INSERT OR REPLACE")
_PUT_BLOB = CHECKPOINT_BLOBS.insert("INSERT OR IGNORE")  # a version's value never changes
_ADD_WRITE = CHECKPOINT_WRITES.insert("INSERT OR IGNORE")
_REPLACE_WRITE = CHECKPOINT_WRITES.insert("INSERT OR REPLACE")
_THREAD_TABLES = ("checkpoints", "checkpoint_blobs", "checkpoint_writes")


def write_checkpoints(c: sqlite3.Connection, rows: list[CheckpointRow]) -> None:
    """Insert checkpoints and their new blobs (part of one batch's transaction)."""
    c.executemany(_PUT_BLOB, [CHECKPOINT_BLOBS.row(b) for row in rows for b in row.blobs])
    c.executemany(_PUT_CHECKPOINT, [CHECKPOINTS.row(row) for row in rows])


def write_writes(c: sqlite3.Connection, rows: list[WriteRow]) -> None:
    for row in rows:
        c.execute(_REPLACE_WRITE if row.replace else _ADD_WRITE, CHECKPOINT_WRITES.row(row))


def delete_for_thread(c: sqlite3.Connection, thread_id: str) -> None:
    for table in _THREAD_TABLES:
        c.execute(f'DELETE FROM "{table}" WHERE thread_id = ?', (thread_id,))


def delete_for_runs(c: sqlite3.Connection, run_ids: list[str]) -> None:
    """Delete the checkpoints these runs wrote, and the writes on them."""
    marks = ", ".join("?" * len(run_ids))
    picked = (
        f"SELECT thread_id, checkpoint_ns, checkpoint_id FROM checkpoints WHERE run_id IN ({marks})"
    )
    c.execute(
        "DELETE FROM checkpoint_writes WHERE (thread_id, checkpoint_ns, checkpoint_id)"
        f" IN ({picked})",
        run_ids,
    )
    c.execute(f"DELETE FROM checkpoints WHERE run_id IN ({marks})", run_ids)


_COPIED = {"thread_id": "?", "run_id": "NULL"}


def _copy(c: sqlite3.Connection, source: str, target: str) -> None:
    for table in (CHECKPOINTS, CHECKPOINT_BLOBS, CHECKPOINT_WRITES):
        names = [col.name for col in table.columns]
        # A copy is no run's: a rollback of the source's run leaves it alone.
        picked = ", ".join(_COPIED.get(n, f'"{n}"') for n in names)
        c.execute(
            f'INSERT OR REPLACE INTO "{table.name}" ({", ".join(names)})'
            f' SELECT {picked} FROM "{table.name}" WHERE thread_id = ?',
            (target, source),
        )


def _rows(
    db: sqlite3.Connection,
    thread_id: str | None,
    checkpoint_ns: str | None,
    checkpoint_id: str | None,
    before: str | None,
    limit: int | None,
) -> list[CheckpointRow]:
    """Checkpoints newest first; a None filter matches any."""
    clauses: list[str] = []
    args: list[str | int] = []
    for condition, value in (
        ("thread_id = ?", thread_id),
        ("checkpoint_ns = ?", checkpoint_ns),
        ("checkpoint_id = ?", checkpoint_id),
        ("checkpoint_id < ?", before),
    ):
        if value is not None:
            clauses.append(condition)
            args.append(value)
    where = ("WHERE " + " AND ".join(clauses)) if clauses else ""
    tail = " ORDER BY checkpoint_id DESC"
    if limit is not None:
        tail += " LIMIT ?"
        args.append(limit)
    return [CHECKPOINTS.load(r) for r in db.execute(CHECKPOINTS.select(where + tail), args)]


def _blobs(db: sqlite3.Connection, row: CheckpointRow, versions: dict[str, str]) -> list[BlobRow]:
    """The blobs of these channels at these versions (missing ones are left out)."""
    if not versions:
        return []
    pairs = " OR ".join("(channel = ? AND version = ?)" for _ in versions)
    query = CHECKPOINT_BLOBS.select(f"WHERE thread_id = ? AND checkpoint_ns = ? AND ({pairs})")
    args = [row.thread_id, row.checkpoint_ns, *(x for pair in versions.items() for x in pair)]
    return [CHECKPOINT_BLOBS.load(r) for r in db.execute(query, args)]


_WRITES_OF = CHECKPOINT_WRITES.select(
    "WHERE thread_id = ? AND checkpoint_ns = ? AND checkpoint_id = ?"
    " ORDER BY task_path, task_id, idx"
)


def _writes(db: sqlite3.Connection, row: CheckpointRow) -> list[WriteRow]:
    """A checkpoint's pending writes, by task and index."""
    args = (row.thread_id, row.checkpoint_ns, row.checkpoint_id)
    return [CHECKPOINT_WRITES.load(r) for r in db.execute(_WRITES_OF, args)]


class SQLiteCheckpoints(SQLiteBase):
    """The :class:`CheckpointStore` part of :class:`~runyard.store.SQLiteStore`."""

    async def get_checkpoint(
        self, thread_id: str, checkpoint_ns: str, checkpoint_id: str | None
    ) -> CheckpointRow | None:
        where = "WHERE thread_id = ? AND checkpoint_ns = ?"
        args: list[str] = [thread_id, checkpoint_ns]
        if checkpoint_id is not None:
            where += " AND checkpoint_id = ?"
            args.append(checkpoint_id)
        query = CHECKPOINTS.select(where + " ORDER BY checkpoint_id DESC LIMIT 1")

        def get(db: sqlite3.Connection) -> CheckpointRow | None:
            row = db.execute(query, args).fetchone()
            return None if row is None else CHECKPOINTS.load(row)

        return await self._read(get)

    async def list_checkpoints(
        self,
        thread_id: str | None,
        checkpoint_ns: str | None,
        *,
        before: str | None = None,
        limit: int | None = None,
    ) -> list[CheckpointRow]:
        return await self._read(lambda db: _rows(db, thread_id, checkpoint_ns, None, before, limit))

    async def load_checkpoints(
        self,
        thread_id: str | None,
        checkpoint_ns: str | None,
        *,
        checkpoint_id: str | None = None,
        before: str | None = None,
        limit: int | None = None,
        versions_of: Callable[[CheckpointRow], dict[str, str]],
    ) -> list[LoadedCheckpoint]:
        def load(db: sqlite3.Connection) -> list[LoadedCheckpoint]:
            rows = _rows(db, thread_id, checkpoint_ns, checkpoint_id, before, limit)
            return [(row, _blobs(db, row, versions_of(row)), _writes(db, row)) for row in rows]

        return await self._read(load, point=limit == 1)

    async def delete_checkpoints(
        self, *, thread_id: str | None = None, run_ids: list[str] | None = None
    ) -> None:
        def delete(c: sqlite3.Connection) -> None:
            if thread_id is not None:
                delete_for_thread(c, thread_id)
            if run_ids:
                delete_for_runs(c, run_ids)

        await self._write(delete)

    async def copy_checkpoints(self, source: str, target: str) -> None:
        await self._write(lambda c: _copy(c, source, target))
