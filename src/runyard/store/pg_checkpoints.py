"""LangGraph checkpoints in a PostgreSQL store: the :class:`~.checkpoints.CheckpointStore` part.

The same rows as :mod:`.checkpoints` (a checkpoint without its values, a blob
per channel version, pending writes), written with the run's batches by
:func:`write_checkpoints` and :func:`write_writes` and read, deleted or copied
here. Loading checkpoints reads each one's blobs and writes in one pipeline.
"""

from __future__ import annotations

from collections.abc import Callable

from .checkpoints import LoadedCheckpoint
from .interface import CheckpointRow, WriteRow
from .pg_connection import PostgresBase
from .pg_schema import Conn, conflict, insert, order, quoted
from .schema import CHECKPOINT_BLOBS, CHECKPOINT_WRITES, CHECKPOINTS

_PUT_CHECKPOINT = insert(CHECKPOINTS, "replace")
_PUT_BLOB = insert(CHECKPOINT_BLOBS, "ignore")  # a version's value never changes
_ADD_WRITE = insert(CHECKPOINT_WRITES, "ignore")
_REPLACE_WRITE = insert(CHECKPOINT_WRITES, "replace")
_THREAD_TABLES = ("checkpoints", "checkpoint_blobs", "checkpoint_writes")
_WRITES_OF = CHECKPOINT_WRITES.select(
    "WHERE thread_id = %s AND checkpoint_ns = %s AND checkpoint_id = %s ORDER BY "
    + order('"task_path"')
    + ", task_id, idx"
)
# A copy is no run's: a rollback of the source's run leaves it alone.
_COPIED = {"thread_id": "%s::text", "run_id": "NULL"}


def write_checkpoints(c: Conn, rows: list[CheckpointRow]) -> None:
    """Insert checkpoints and their new blobs (part of one batch's transaction)."""
    cursor = c.cursor()
    cursor.executemany(_PUT_BLOB, [CHECKPOINT_BLOBS.row(b) for row in rows for b in row.blobs])
    cursor.executemany(_PUT_CHECKPOINT, [CHECKPOINTS.row(row) for row in rows])


def write_writes(c: Conn, rows: list[WriteRow]) -> None:
    for row in rows:
        c.execute(_REPLACE_WRITE if row.replace else _ADD_WRITE, CHECKPOINT_WRITES.row(row))


def delete_for_thread(c: Conn, thread_id: str) -> None:
    for table in _THREAD_TABLES:
        c.execute(f'DELETE FROM "{table}" WHERE thread_id = %s', (thread_id,))


def delete_for_runs(c: Conn, run_ids: list[str]) -> None:
    """Delete the checkpoints these runs wrote, and the writes on them."""
    c.execute(
        "DELETE FROM checkpoint_writes WHERE (thread_id, checkpoint_ns, checkpoint_id) IN"
        " (SELECT thread_id, checkpoint_ns, checkpoint_id FROM checkpoints"
        " WHERE run_id = ANY(%s))",
        (run_ids,),
    )
    c.execute("DELETE FROM checkpoints WHERE run_id = ANY(%s)", (run_ids,))


def _copy(c: Conn, source: str, target: str) -> None:
    for table in (CHECKPOINTS, CHECKPOINT_BLOBS, CHECKPOINT_WRITES):
        names = [col.name for col in table.columns]
        picked = ", ".join(_COPIED.get(n, f'"{n}"') for n in names)
        c.execute(
            f'INSERT INTO "{table.name}" ({quoted(names)})'
            f' SELECT {picked} FROM "{table.name}" WHERE thread_id = %s'
            + conflict(table, "replace"),
            (target, source),
        )


def _rows(
    db: Conn,
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
        ("thread_id = %s", thread_id),
        ("checkpoint_ns = %s", checkpoint_ns),
        ("checkpoint_id = %s", checkpoint_id),
        ("checkpoint_id < %s", before),
    ):
        if value is not None:
            clauses.append(condition)
            args.append(value)
    where = ("WHERE " + " AND ".join(clauses)) if clauses else ""
    tail = " ORDER BY checkpoint_id DESC, thread_id, checkpoint_ns"
    if limit is not None and limit >= 0:  # SQLite reads a negative LIMIT as none
        tail += " LIMIT %s"
        args.append(limit)
    return [CHECKPOINTS.load(r) for r in db.execute(CHECKPOINTS.select(where + tail), args)]


def _blobs_query(row: CheckpointRow, versions: dict[str, str]) -> tuple[str, list[str]]:
    """The blobs of these channels at these versions (missing ones are left out)."""
    pairs = " OR ".join("(channel = %s AND version = %s)" for _ in versions)
    query = CHECKPOINT_BLOBS.select(f"WHERE thread_id = %s AND checkpoint_ns = %s AND ({pairs})")
    args = [row.thread_id, row.checkpoint_ns, *(x for pair in versions.items() for x in pair)]
    return query, args


def _load(
    db: Conn, rows: list[CheckpointRow], versions_of: Callable[[CheckpointRow], dict[str, str]]
) -> list[LoadedCheckpoint]:
    """Each checkpoint with its blobs and its pending writes, read in one pipeline."""
    with db.pipeline() as pipeline:
        pending = []
        for row in rows:
            versions = versions_of(row)
            blobs = db.execute(*_blobs_query(row, versions)) if versions else None
            writes = db.execute(_WRITES_OF, (row.thread_id, row.checkpoint_ns, row.checkpoint_id))
            pending.append((row, blobs, writes))
        pipeline.sync()
        return [
            (
                row,
                [] if blobs is None else [CHECKPOINT_BLOBS.load(r) for r in blobs.fetchall()],
                [CHECKPOINT_WRITES.load(r) for r in writes.fetchall()],
            )
            for row, blobs, writes in pending
        ]


class PostgresCheckpoints(PostgresBase):
    """The :class:`~.checkpoints.CheckpointStore` part of a PostgreSQL store."""

    async def get_checkpoint(
        self, thread_id: str, checkpoint_ns: str, checkpoint_id: str | None
    ) -> CheckpointRow | None:
        found = await self._read(
            lambda db: _rows(db, thread_id, checkpoint_ns, checkpoint_id, None, 1)
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
        def load(db: Conn) -> list[LoadedCheckpoint]:
            rows = _rows(db, thread_id, checkpoint_ns, checkpoint_id, before, limit)
            return _load(db, rows, versions_of)

        return await self._read(load)

    async def delete_checkpoints(
        self, *, thread_id: str | None = None, run_ids: list[str] | None = None
    ) -> None:
        def delete(c: Conn) -> None:
            if thread_id is not None:
                delete_for_thread(c, thread_id)
            if run_ids:
                delete_for_runs(c, run_ids)

        await self._write(delete)

    async def copy_checkpoints(self, source: str, target: str) -> None:
        await self._write(lambda c: _copy(c, source, target))
