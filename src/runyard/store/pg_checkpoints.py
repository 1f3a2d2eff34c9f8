"""LangGraph checkpoints in a PostgreSQL store: the :class:`~.checkpoints.CheckpointStore` part.

The same rows as :mod:`.checkpoints` (a checkpoint without its values, a blob
per channel version, pending writes), written, deleted and copied by the same
:class:`~.checkpoints.CheckpointsOnSQL` in PostgreSQL's dialect
(:data:`PG_CHECKPOINTS`). Loading checkpoints reads each one's blobs and
writes in one pipeline.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg

from .checkpoints import CheckpointsOnSQL, CheckpointSql, LoadedCheckpoint, loaded
from .interface import CheckpointRow
from .pg_connection import PostgresBase, one_of
from .pg_schema import Conn, conflict, insert, order, quoted
from .schema import CHECKPOINT_BLOBS, CHECKPOINT_WRITES, CHECKPOINTS, Table


def _replace_into(table: Table[Any], select: str) -> str:
    names = quoted([col.name for col in table.columns])
    return f'INSERT INTO "{table.name}" ({names}) {select}' + conflict(table, "replace")


PG_CHECKPOINTS = CheckpointSql(
    mark="%s",
    put_checkpoint=insert(CHECKPOINTS, "replace"),
    put_blob=insert(CHECKPOINT_BLOBS, "ignore"),
    add_write=insert(CHECKPOINT_WRITES, "ignore"),
    replace_write=insert(CHECKPOINT_WRITES, "replace"),
    replace_into=_replace_into,
    text_mark="%s::text",
    newest="checkpoint_id DESC, thread_id, checkpoint_ns",
    task_path=order('"task_path"'),
    cursor=psycopg.Connection.cursor,
    one_of=one_of,
)


def _load(
    db: Conn, rows: list[CheckpointRow], versions_of: Callable[[CheckpointRow], dict[str, str]]
) -> list[LoadedCheckpoint]:
    """Each checkpoint with its blobs and its pending writes, read in one pipeline."""
    with db.pipeline() as pipeline:
        pending = [(row, *PG_CHECKPOINTS.read(db, row, versions_of(row))) for row in rows]
        pipeline.sync()
        return [loaded(*read) for read in pending]


class PostgresCheckpoints(PostgresBase, CheckpointsOnSQL):
    """The :class:`~.checkpoints.CheckpointStore` part of a PostgreSQL store."""

    _checkpoints = PG_CHECKPOINTS

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
            rows = PG_CHECKPOINTS.rows(db, thread_id, checkpoint_ns, checkpoint_id, before, limit)
            return _load(db, rows, versions_of)

        return await self._read(load)
