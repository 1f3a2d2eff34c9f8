"""The embedded default :class:`~runyard.store.Store`: one SQLite file in WAL mode.

:class:`SQLiteStore` is the connection base (:mod:`.connection`) with the
operations of each part of the store: runs, threads and events here,
checkpoints (:mod:`.checkpoints`), assistants (:mod:`.assistants`), the
memory store's items (:mod:`.items`), crons (:mod:`.crons`) and the webhook
outbox (:mod:`.outbox`) in mixins of their own.
"""

from __future__ import annotations

import trio
import trio.lowlevel

from ..model import JSON, Event, Run, Thread, ThreadStatus
from . import queries
from .assistants import SQLiteAssistants
from .checkpoints import SQLiteCheckpoints
from .connection import SQLiteBase
from .crons import SQLiteCrons
from .interface import Batch, ThreadState
from .items import SQLiteItems
from .outbox import SQLiteOutbox


class SQLiteStore(
    SQLiteCheckpoints, SQLiteAssistants, SQLiteItems, SQLiteCrons, SQLiteOutbox, SQLiteBase
):
    """The embedded default :class:`~runyard.store.Store`."""

    # -- threads ----------------------------------------------------------------

    async def put_thread(self, thread: Thread) -> None:
        await self._write(lambda c: queries.put_thread(c, thread))

    async def get_thread(self, thread_id: str) -> Thread | None:
        return await self._read(lambda db: queries.get_thread(db, thread_id))

    async def thread_owner(self, thread_id: str) -> str | None:
        return await self._read(lambda db: queries.thread_owner(db, thread_id), point=True)

    async def search_threads(
        self,
        *,
        owner: str,
        metadata: dict[str, JSON],
        status: str | None,
        limit: int,
        offset: int,
        values: dict[str, JSON] | None = None,
    ) -> list[Thread]:
        return await self._read(
            lambda db: queries.search_threads(
                db,
                owner=owner,
                metadata=metadata,
                status=status,
                limit=limit,
                offset=offset,
                values=values,
            )
        )

    async def count_threads(
        self, *, owner: str, metadata: dict[str, JSON], values: dict[str, JSON], status: str | None
    ) -> int:
        return await self._read(
            lambda db: queries.count_threads(
                db, owner=owner, metadata=metadata, values=values, status=status
            )
        )

    async def patch_thread(
        self, thread_id: str, metadata: dict[str, JSON], updated_at: float
    ) -> Thread | None:
        return await self._write(lambda c: queries.patch_thread(c, thread_id, metadata, updated_at))

    async def set_thread_state(
        self, thread_id: str, state: ThreadState, status: ThreadStatus, updated_at: float
    ) -> None:
        await self._write(
            lambda c: queries.set_thread_state(c, thread_id, state, status, updated_at)
        )

    async def delete_thread(self, thread_id: str) -> None:
        await self._write(lambda c: queries.delete_thread(c, thread_id))

    # -- runs -------------------------------------------------------------------

    async def get_run(self, run_id: str) -> Run | None:
        return await self._read(lambda db: queries.get_run(db, run_id))

    async def list_runs(
        self,
        thread_id: str | None,
        *,
        status: str | None,
        limit: int,
        offset: int,
        owner: str | None = None,
    ) -> list[Run]:
        return await self._read(
            lambda db: queries.list_runs(
                db, thread_id, status=status, limit=limit, offset=offset, owner=owner
            )
        )

    async def unfinished_runs(self) -> list[Run]:
        return await self._read(queries.unfinished_runs)

    async def delete_run(self, run_id: str) -> None:
        await self._write(lambda c: queries.delete_run(c, run_id))

    async def new_attempt(self, run_id: str, attempt: int, at: float) -> None:
        await self._write(lambda c: queries.new_attempt(c, run_id, attempt, at))

    async def purge(self, before: float, *, batch: int = 200) -> int:
        """Delete finished runs last updated before ``before``, and their events.

        Works in small transactions, so writers are never held up for long.
        Returns how many runs were deleted; a cancel keeps the batches done.
        """
        total = 0
        while True:
            deleted = await self._write(lambda c: queries.purge_some(c, before, batch))
            total += deleted
            if deleted < batch:
                return total
            await trio.lowlevel.checkpoint()  # let queued writers in between batches

    # -- events -----------------------------------------------------------------

    async def read_events(self, run_id: str, after_seq: int, limit: int) -> list[Event]:
        return await self._read(lambda db: queries.read_events(db, run_id, after_seq, limit))

    async def last_seq(self, run_id: str) -> int:
        return await self._read(lambda db: queries.last_seq(db, run_id))

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
