"""The :class:`~runyard.store.Store` that replicas share: one PostgreSQL database.

:class:`PostgresStore` is the connection base (:mod:`.pg_connection`) with the
operations of each part of the store, in mixins of their own: runs, threads
and events (:mod:`.runs`, their SQL in :mod:`.pg_queries`), checkpoints
(:mod:`.pg_checkpoints`), assistants (:mod:`.pg_assistants`), the memory
store's items (:mod:`.pg_items`), crons (:mod:`.pg_crons`) and the webhook
outbox (:mod:`.pg_outbox`); here, a batch's write. The tables are
:mod:`.schema`'s, in the dialect of :mod:`.pg_schema`. Each operation gives the same result as on
:class:`~runyard.store.SQLiteStore`: the same contract tests run on both.

With ``cluster`` (as the server opens it) it is one replica of several
(:mod:`.pg_cluster`: leases, reaping, the fence on every write, the shared
queue, cancels). With ``exclusive`` one process owns the database, as with
SQLite; with neither, several processes may open one database and the
first to open an empty one creates the schema while the others wait.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from ..errors import Invalid, StoreError
from . import pg_cluster, pg_queries
from .interface import Batch
from .pg_assistants import PostgresAssistants
from .pg_checkpoints import PostgresCheckpoints
from .pg_cluster import PostgresCluster
from .pg_connection import PostgresBase
from .pg_crons import PostgresCrons
from .pg_items import PostgresItems
from .pg_outbox import PostgresOutbox
from .pg_schema import Conn
from .runs import RunsOnSQL


class PostgresStore(
    PostgresCluster,
    PostgresCheckpoints,
    PostgresAssistants,
    PostgresItems,
    PostgresCrons,
    PostgresOutbox,
    PostgresBase,
    RunsOnSQL,
):
    """A :class:`~runyard.store.Store` on PostgreSQL, from a libpq URL."""

    _runs = pg_queries.PG_RUNS

    async def commit(self, batch: Batch) -> None:
        """Write the batch in one transaction; :class:`StoreError` if it could not be.

        Text holding NUL fails the batch as any refusal does (elsewhere it is
        :class:`Invalid`): the commit writer then fails the batch's runs and goes on.
        A replica that lost its lease commits nothing: :class:`~.pg_cluster.LeaseLost`.
        """
        try:
            copying = len(batch.events) >= pg_queries.COPY_FROM and not batch.again
            if copying and await self._commit_copying(batch):
                return
            await self._write(self._writing(batch), pipelined=True)
        except Invalid as exc:
            raise StoreError("database write failed (text holding NUL)") from exc

    async def _commit_copying(self, batch: Batch) -> bool:
        """Write the batch with its events by COPY (far faster than INSERTs); False,
        having written nothing, if one of them was stored already (COPY cannot keep
        an event's first version as INSERTs do)."""
        rest = dataclasses.replace(batch, events=[])
        try:
            await self._write(
                self._writing(rest),
                pipelined=True,
                bulk=lambda c: pg_queries.copy_events(c, batch.events),
            )
        except pg_queries.EventsThere:
            return False
        return True

    def _writing(self, batch: Batch) -> Callable[[Conn], None]:
        """The batch's writes, in a transaction of :meth:`_write`'s."""

        def write(c: Conn) -> None:
            pg_queries.commit(c, batch)
            if self.replica_id is not None:
                pg_cluster.committed(c, batch, self.replica_id)

        return write
