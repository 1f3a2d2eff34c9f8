"""Threads, runs and events, written once for SQLite and PostgreSQL: :class:`RunsOnSQL`.

The :class:`~.interface.RunStore` operations of both stores, each one
transaction (or one read) of :mod:`.queries` in the store's dialect
(``_runs``). Each store writes a batch itself (``commit``): SQLite sizes it
for a write on trio's thread, PostgreSQL pipelines it behind its fence.
"""

from __future__ import annotations

import trio
import trio.lowlevel

from ..model import JSON, Event, Run, Thread, ThreadStatus
from .interface import OnSQL, ThreadState, page_of
from .queries import RunSql


class RunsOnSQL(OnSQL):
    """The :class:`~.interface.RunStore` but for ``commit``, for a store whose
    ``_read``/``_write`` run SQL of ``_runs``."""

    _runs: RunSql

    # -- threads ----------------------------------------------------------------

    async def put_thread(self, thread: Thread) -> None:
        await self._write(lambda c: self._runs.put_thread(c, thread))

    async def get_thread(self, thread_id: str) -> Thread | None:
        return await self._read(lambda db: self._runs.get_thread(db, thread_id))

    async def thread_owner(self, thread_id: str) -> str | None:
        return await self._read(lambda db: self._runs.thread_owner(db, thread_id))

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
        """Newest first; metadata and values are matched on the decoded rows, key by key."""
        sql = self._runs
        return await self._read(
            lambda db: page_of(
                sql.matching(db, owner, metadata, values or {}, status), limit, offset
            )
        )

    async def count_threads(
        self, *, owner: str, metadata: dict[str, JSON], values: dict[str, JSON], status: str | None
    ) -> int:
        sql = self._runs
        return await self._read(
            lambda db: sum(1 for _ in sql.matching(db, owner, metadata, values, status))
        )

    async def patch_thread(
        self, thread_id: str, metadata: dict[str, JSON], updated_at: float
    ) -> Thread | None:
        return await self._write(
            lambda c: self._runs.patch_thread(c, thread_id, metadata, updated_at)
        )

    async def set_thread_state(
        self, thread_id: str, state: ThreadState, status: ThreadStatus, updated_at: float
    ) -> None:
        await self._write(
            lambda c: self._runs.set_thread_state(c, thread_id, state, status, updated_at)
        )

    async def delete_thread(self, thread_id: str) -> None:
        await self._write(lambda c: self._runs.delete_thread(c, thread_id))

    # -- runs -------------------------------------------------------------------

    async def get_run(self, run_id: str) -> Run | None:
        return await self._read(lambda db: self._runs.get_run(db, run_id))

    async def list_runs(
        self,
        thread_id: str | None,
        *,
        status: str | None,
        limit: int,
        offset: int,
        owner: str | None = None,
    ) -> list[Run]:
        sql = self._runs
        return await self._read(
            lambda db: sql.list_runs(db, thread_id, status, owner, limit, offset)
        )

    async def unfinished_runs(self) -> list[Run]:
        return await self._read(self._runs.unfinished_runs)

    async def delete_run(self, run_id: str) -> None:
        await self._write(lambda c: self._runs.delete_run(c, run_id))

    async def new_attempt(self, run_id: str, attempt: int, at: float) -> None:
        await self._write(lambda c: self._runs.new_attempt(c, run_id, attempt, at))

    async def purge(self, before: float, *, batch: int = 200) -> int:
        """Delete finished runs last updated before ``before``, and their events.

        Works in small transactions, so writers are never held up for long.
        Returns how many runs were deleted; a cancel keeps the batches done.
        """
        total = 0
        while True:
            deleted = await self._write(lambda c: self._runs.purge_some(c, before, batch))
            total += deleted
            if deleted < batch:
                return total
            await trio.lowlevel.checkpoint()  # let queued writers in between batches

    # -- events -----------------------------------------------------------------

    async def read_events(self, run_id: str, after_seq: int, limit: int) -> list[Event]:
        return await self._read(lambda db: self._runs.read_events(db, run_id, after_seq, limit))

    async def last_seq(self, run_id: str) -> int:
        return await self._read(lambda db: self._runs.last_seq(db, run_id))
