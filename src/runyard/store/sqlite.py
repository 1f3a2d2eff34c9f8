"""The embedded default :class:`~runyard.store.Store`: one SQLite file in WAL mode.

:class:`SQLiteStore` is the connection base (:mod:`.connection`) with the
operations of each part of the store, in mixins of their own: runs, threads
and events (:mod:`.runs`, their SQL in :mod:`.queries`), checkpoints
(:mod:`.checkpoints`), assistants (:mod:`.assistants`), the memory store's
items (:mod:`.items`), crons (:mod:`.crons`) and the webhook outbox
(:mod:`.outbox`). Here: a batch's write, run on trio's thread when it is
small (:meth:`~.connection.SQLiteBase._write`), and a thread's owner read as
a point read.
"""

from __future__ import annotations

from . import queries
from .assistants import SQLiteAssistants
from .checkpoints import SQLiteCheckpoints
from .connection import SQLiteBase
from .crons import SQLiteCrons
from .interface import Batch
from .items import SQLiteItems
from .outbox import SQLiteOutbox
from .runs import RunsOnSQL


class SQLiteStore(
    SQLiteCheckpoints,
    SQLiteAssistants,
    SQLiteItems,
    SQLiteCrons,
    SQLiteOutbox,
    SQLiteBase,
    RunsOnSQL,
):
    """The embedded default :class:`~runyard.store.Store`."""

    _runs = queries.SQLITE_RUNS

    async def thread_owner(self, thread_id: str) -> str | None:
        return await self._read(lambda db: self._runs.thread_owner(db, thread_id), point=True)

    async def commit(self, batch: Batch) -> None:
        await self._write(lambda c: queries.commit(c, batch), size=_size(batch))


# What a new run's row and its thread write, about (inputs are bounded by max_body).
_ROW_BYTES = 4096


def _size(batch: Batch) -> int | None:
    """About how many bytes ``batch`` writes; None with a run's end, which writes its
    output and its thread's values too (any size)."""
    if batch.finals:
        return None
    checkpoints = sum(
        len(row.checkpoint) + sum(len(b.blob or b"") for b in row.blobs)
        for row in batch.checkpoints
    )
    return (
        sum(len(e.data) for e in batch.events)
        + checkpoints
        + sum(len(w.blob or b"") for w in batch.writes)
        + _ROW_BYTES * (len(batch.created) + len(batch.running))
    )
