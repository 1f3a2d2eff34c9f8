"""LangGraph checkpoints in runyard's store: reads here, writes with the run's batches.

A checkpoint is stored without its channel values; each channel's value is a
blob stored once per version (a step that changed two channels writes two
blobs), and reading a checkpoint gathers the blobs of the versions it names.
Checkpoints and pending writes are written through the group-commit writer
(:class:`~runyard.store.Batch`), so they commit in order with the run's
events; this part reads them, and deletes or copies a thread's.
"""

from __future__ import annotations

import dataclasses
import functools
import sqlite3
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from .connection import SQLiteBase, sqlite_one_of
from .interface import BlobRow, CheckpointRow, OneOf, OnSQL, WriteRow
from .schema import CHECKPOINT_BLOBS, CHECKPOINT_WRITES, CHECKPOINTS, Table


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

_THREAD_TABLES = (CHECKPOINTS, CHECKPOINT_BLOBS, CHECKPOINT_WRITES)


@dataclasses.dataclass(frozen=True)
class CheckpointSql:
    """The checkpoints' statements in one database's dialect: its placeholder ``mark``;
    the INSERT of a checkpoint (replacing one of the same id), of a blob (left alone if
    the version has one: a version's value never changes) and of a write (left alone, or
    replacing one: :attr:`~.interface.WriteRow.replace`); ``replace_into(table, select)``,
    the INSERT of a SELECT's rows that replaces rows of the same key; ``text_mark``, a
    placeholder that a SELECT returns as text; the ``ORDER BY`` of checkpoints, newest
    first, and of a write's ``task_path``; ``cursor``, what runs ``executemany`` on a
    connection; and ``one_of`` (:data:`~.interface.OneOf`)."""

    mark: str
    put_checkpoint: str
    put_blob: str
    add_write: str
    replace_write: str
    replace_into: Callable[[Table[Any], str], str]
    text_mark: str
    newest: str
    task_path: str
    cursor: Callable[[Any], Any]
    one_of: OneOf

    @functools.cached_property
    def writes_of(self) -> str:
        """A checkpoint's pending writes, by task and index."""
        m = self.mark
        return CHECKPOINT_WRITES.select(
            f"WHERE thread_id = {m} AND checkpoint_ns = {m} AND checkpoint_id = {m}"
            f" ORDER BY {self.task_path}, task_id, idx"
        )

    def write_checkpoints(self, c: Any, rows: list[CheckpointRow]) -> None:
        """Insert checkpoints and their new blobs (part of one batch's transaction)."""
        cursor = self.cursor(c)
        cursor.executemany(
            self.put_blob, [CHECKPOINT_BLOBS.row(b) for row in rows for b in row.blobs]
        )
        cursor.executemany(self.put_checkpoint, [CHECKPOINTS.row(row) for row in rows])

    def write_writes(self, c: Any, rows: list[WriteRow]) -> None:
        for row in rows:
            c.execute(
                self.replace_write if row.replace else self.add_write, CHECKPOINT_WRITES.row(row)
            )

    def delete_for_thread(self, c: Any, thread_id: str) -> None:
        for table in _THREAD_TABLES:
            c.execute(f'DELETE FROM "{table.name}" WHERE thread_id = {self.mark}', (thread_id,))

    def delete_for_runs(self, c: Any, run_ids: list[str]) -> None:
        """Delete the checkpoints these runs wrote, and the writes on them."""
        theirs, args = self.one_of("run_id", run_ids)
        c.execute(
            "DELETE FROM checkpoint_writes WHERE (thread_id, checkpoint_ns, checkpoint_id) IN"
            f" (SELECT thread_id, checkpoint_ns, checkpoint_id FROM checkpoints WHERE {theirs})",
            args,
        )
        c.execute(f"DELETE FROM checkpoints WHERE {theirs}", args)

    def copy(self, c: Any, source: str, target: str) -> None:
        """Copy every checkpoint, blob and write of thread ``source`` to thread ``target``."""
        # A copy is no run's: a rollback of the source's run leaves it alone.
        copied = {"thread_id": self.text_mark, "run_id": "NULL"}
        for table in _THREAD_TABLES:
            picked = ", ".join(copied.get(col.name, f'"{col.name}"') for col in table.columns)
            select = f'SELECT {picked} FROM "{table.name}" WHERE thread_id = {self.mark}'
            c.execute(self.replace_into(table, select), (target, source))

    def rows(
        self,
        db: Any,
        thread_id: str | None,
        checkpoint_ns: str | None,
        checkpoint_id: str | None,
        before: str | None,
        limit: int | None,
    ) -> list[CheckpointRow]:
        """Checkpoints newest first; a None filter matches any, as does a negative limit."""
        m = self.mark
        clauses: list[str] = []
        args: list[str | int] = []
        for condition, value in (
            (f"thread_id = {m}", thread_id),
            (f"checkpoint_ns = {m}", checkpoint_ns),
            (f"checkpoint_id = {m}", checkpoint_id),
            (f"checkpoint_id < {m}", before),
        ):
            if value is not None:
                clauses.append(condition)
                args.append(value)
        where = ("WHERE " + " AND ".join(clauses)) if clauses else ""
        tail = f" ORDER BY {self.newest}"
        if limit is not None and limit >= 0:
            tail += f" LIMIT {m}"
            args.append(limit)
        return [CHECKPOINTS.load(r) for r in db.execute(CHECKPOINTS.select(where + tail), args)]

    def read(self, db: Any, row: CheckpointRow, versions: dict[str, str]) -> tuple[Any, Any]:
        """Run the reads of a checkpoint's blobs of these channel versions (None without
        any; missing ones are left out) and of its pending writes: their cursors."""
        m = self.mark
        blobs = None
        if versions:
            pairs = " OR ".join(f"(channel = {m} AND version = {m})" for _ in versions)
            where = f"WHERE thread_id = {m} AND checkpoint_ns = {m} AND ({pairs})"
            args = [
                row.thread_id,
                row.checkpoint_ns,
                *(x for pair in versions.items() for x in pair),
            ]
            blobs = db.execute(CHECKPOINT_BLOBS.select(where), args)
        return blobs, db.execute(
            self.writes_of, (row.thread_id, row.checkpoint_ns, row.checkpoint_id)
        )


def loaded(
    row: CheckpointRow, blobs: Iterable[Any] | None, writes: Iterable[Any]
) -> LoadedCheckpoint:
    """A checkpoint with the rows of its :meth:`CheckpointSql.read`, decoded."""
    return (
        row,
        [] if blobs is None else [CHECKPOINT_BLOBS.load(r) for r in blobs],
        [CHECKPOINT_WRITES.load(r) for r in writes],
    )


def _replace_into(table: Table[Any], select: str) -> str:
    names = ", ".join(col.name for col in table.columns)
    return f'INSERT OR REPLACE INTO "{table.name}" ({names}) {select}'


SQLITE_CHECKPOINTS = CheckpointSql(
    mark="?",
    put_checkpoint=CHECKPOINTS.insert("INSERT OR REPLACE"),
    put_blob=CHECKPOINT_BLOBS.insert("INSERT OR IGNORE"),
    add_write=CHECKPOINT_WRITES.insert("INSERT OR IGNORE"),
    replace_write=CHECKPOINT_WRITES.insert("INSERT OR REPLACE"),
    replace_into=_replace_into,
    text_mark="?",
    newest="checkpoint_id DESC",
    task_path="task_path",
    cursor=sqlite3.Connection.cursor,
    one_of=sqlite_one_of,
)


class CheckpointsOnSQL(OnSQL):
    """The :class:`CheckpointStore` but for :meth:`~CheckpointStore.load_checkpoints`
    (each database reads its own way), for a store whose ``_read``/``_write`` run SQL
    of ``_checkpoints``."""

    _checkpoints: CheckpointSql

    async def get_checkpoint(
        self, thread_id: str, checkpoint_ns: str, checkpoint_id: str | None
    ) -> CheckpointRow | None:
        sql = self._checkpoints
        found = await self._read(
            lambda db: sql.rows(db, thread_id, checkpoint_ns, checkpoint_id, None, 1)
        )
        return found[0] if found else None

    async def list_checkpoints(
        self,
        thread_id: str | None,
        checkpoint_ns: str | None,
        *,
        before: str | None = None,
        limit: int | None = None,
    ) -> list[CheckpointRow]:
        sql = self._checkpoints
        return await self._read(
            lambda db: sql.rows(db, thread_id, checkpoint_ns, None, before, limit)
        )

    async def delete_checkpoints(
        self, *, thread_id: str | None = None, run_ids: list[str] | None = None
    ) -> None:
        sql = self._checkpoints

        def delete(c: Any) -> None:
            if thread_id is not None:
                sql.delete_for_thread(c, thread_id)
            if run_ids:
                sql.delete_for_runs(c, run_ids)

        await self._write(delete)

    async def copy_checkpoints(self, source: str, target: str) -> None:
        await self._write(lambda c: self._checkpoints.copy(c, source, target))


class SQLiteCheckpoints(SQLiteBase, CheckpointsOnSQL):
    """The :class:`CheckpointStore` part of :class:`~runyard.store.SQLiteStore`."""

    _checkpoints = SQLITE_CHECKPOINTS

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
        sql = SQLITE_CHECKPOINTS

        def load(db: sqlite3.Connection) -> list[LoadedCheckpoint]:
            rows = sql.rows(db, thread_id, checkpoint_ns, checkpoint_id, before, limit)
            return [loaded(row, *sql.read(db, row, versions_of(row))) for row in rows]

        return await self._read(load, point=limit == 1)
