"""The :class:`~runyard.store.Store` that replicas share: one PostgreSQL database.

:class:`PostgresStore` is the connection base (:mod:`.pg_connection`) with the
operations of each part of the store: runs, threads and events here (their
SQL in :mod:`.pg_queries`), checkpoints (:mod:`.pg_checkpoints`), assistants
(:mod:`.pg_assistants`), the memory store's items (:mod:`.pg_items`), crons
(:mod:`.pg_crons`) and the webhook outbox (:mod:`.pg_outbox`) in mixins of
their own; the tables are :mod:`.schema`'s, in the dialect of
:mod:`.pg_schema`. Each operation gives the same result as on
:class:`~runyard.store.SQLiteStore`: the same contract tests run on both.

With ``exclusive`` (as the server opens it) one process owns the database, as
with SQLite. With ``cluster`` it is one replica of several (:mod:`.pg_cluster`:
leases, reaping, the fence on every write, the shared queue, cancels);
with neither, several processes may open one database and the first to open
an empty one creates the schema while the others wait.
"""

from __future__ import annotations

import trio
import trio.lowlevel

from ..errors import Invalid, StoreError
from ..model import JSON, Event, Run, Thread, ThreadStatus
from . import pg_cluster, pg_queries
from .interface import Batch, ThreadState
from .pg_assistants import PostgresAssistants
from .pg_checkpoints import PostgresCheckpoints
from .pg_cluster import PostgresCluster
from .pg_connection import PostgresBase
from .pg_crons import PostgresCrons
from .pg_items import PostgresItems
from .pg_outbox import PostgresOutbox
from .pg_schema import Conn


class PostgresStore(
    PostgresCluster,
    PostgresCheckpoints,
    PostgresAssistants,
    PostgresItems,
    PostgresCrons,
    PostgresOutbox,
    PostgresBase,
):
    """A :class:`~runyard.store.Store` on PostgreSQL, from a libpq URL."""

    # -- threads ----------------------------------------------------------------

    async def put_thread(self, thread: Thread) -> None:
        await self._write(lambda c: pg_queries.put_thread(c, thread))

    async def get_thread(self, thread_id: str) -> Thread | None:
        return await self._read(lambda db: pg_queries.get_thread(db, thread_id))

    async def thread_owner(self, thread_id: str) -> str | None:
        return await self._read(lambda db: pg_queries.thread_owner(db, thread_id))

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
            lambda db: pg_queries.search_threads(
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
            lambda db: pg_queries.count_threads(
                db, owner=owner, metadata=metadata, values=values, status=status
            )
        )

    async def patch_thread(
        self, thread_id: str, metadata: dict[str, JSON], updated_at: float
    ) -> Thread | None:
        return await self._write(
            lambda c: pg_queries.patch_thread(c, thread_id, metadata, updated_at)
        )

    async def set_thread_state(
        self, thread_id: str, state: ThreadState, status: ThreadStatus, updated_at: float
    ) -> None:
        await self._write(
            lambda c: pg_queries.set_thread_state(c, thread_id, state, status, updated_at)
        )

    async def delete_thread(self, thread_id: str) -> None:
        await self._write(lambda c: pg_queries.delete_thread(c, thread_id))

    # -- runs -------------------------------------------------------------------

    async def get_run(self, run_id: str) -> Run | None:
        return await self._read(lambda db: pg_queries.get_run(db, run_id))

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
            lambda db: pg_queries.list_runs(
                db, thread_id, status=status, limit=limit, offset=offset, owner=owner
            )
        )

    async def unfinished_runs(self) -> list[Run]:
        return await self._read(pg_queries.unfinished_runs)

    async def delete_run(self, run_id: str) -> None:
        await self._write(lambda c: pg_queries.delete_run(c, run_id))

    async def new_attempt(self, run_id: str, attempt: int, at: float) -> None:
        await self._write(lambda c: pg_queries.new_attempt(c, run_id, attempt, at))

    async def purge(self, before: float, *, batch: int = 200) -> int:
        """Delete finished runs last updated before ``before``, and their events.

        Works in small transactions, so writers are never held up for long.
        Returns how many runs were deleted; a cancel keeps the batches done.
        """
        total = 0
        while True:
            deleted = await self._write(lambda c: pg_queries.purge_some(c, before, batch))
            total += deleted
            if deleted < batch:
                return total
            await trio.lowlevel.checkpoint()  # let queued writers in between batches

    # -- events -----------------------------------------------------------------

    async def read_events(self, run_id: str, after_seq: int, limit: int) -> list[Event]:
        return await self._read(lambda db: pg_queries.read_events(db, run_id, after_seq, limit))

    async def last_seq(self, run_id: str) -> int:
        return await self._read(lambda db: pg_queries.last_seq(db, run_id))

    async def commit(self, batch: Batch) -> None:
        """Write the batch in one transaction; :class:`StoreError` if it could not be.

        Text holding NUL fails the batch as any refusal does (elsewhere it is
        :class:`Invalid`): the commit writer then fails the batch's runs and goes on.
        A replica that lost its lease commits nothing: :class:`~.pg_cluster.LeaseLost`.
        """

        def write(c: Conn) -> None:
            pg_queries.commit(c, batch)
            if self.replica_id is not None:
                pg_cluster.committed(c, batch, self.replica_id)

        try:
            await self._write(write)
        except Invalid as exc:
            raise StoreError("database write failed (text holding NUL)") from exc
