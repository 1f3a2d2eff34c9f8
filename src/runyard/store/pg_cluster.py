"""Replicas sharing a PostgreSQL store: leases, reaping, the fence, the queue, cancels.

The tables are :data:`~.pg_schema.CLUSTER_TABLES`, created when a store opens
as a replica (``PostgresStore(url, cluster=True)``). What each part promises:

- **leases**: each process start joins with a fresh replica id
  (:meth:`PostgresCluster.join_cluster`) and renews its lease on a connection
  of its own (:meth:`~PostgresCluster.heartbeat`); expiry is on the
  database's clock, so the replicas' clocks do not matter.
- **reaping** (:meth:`~PostgresCluster.reap_replicas`): any replica deletes the
  rows of replicas whose lease expired, ends each running run they held
  through ``settle`` (``interrupted``/``restart``, its ``end`` after the last
  stored event) and hands their pending runs back to the queue, in one
  transaction. Rows are taken ``FOR UPDATE SKIP LOCKED``, so two reapers at
  once reap each replica once.
- **the fence** (:meth:`~PostgresCluster._fence`): every write transaction of
  a replica begins by locking its own row ``FOR KEY SHARE``; a missing row
  (reaped, or left) fails the transaction whole with :class:`LeaseLost`. A
  reaper skips a row so locked, so a write that began under the lease
  commits before the reaping, never after. A replica paused in the middle
  of a transaction would hold that lock: the server ends its session after
  a lease of idleness (``idle_in_transaction_session_timeout``, set by the
  fence), and the reapers go on.
- **the queue** (:meth:`~PostgresCluster.claim_runs`): a pending run may start
  once its ``available_at`` has passed and no run of its thread is running
  or ahead of it in ``queue_seq``; claiming marks it ``running`` with the
  claimer's id, ``FOR UPDATE SKIP LOCKED`` inside a materialized CTE. The
  partial unique index on ``(thread_id) WHERE status = 'running'`` holds the
  one-running-run rule whatever races. A new run is kept by the replica
  that admitted it (its task waits there for its turn) until that replica
  is reaped; any replica claims the runs nobody keeps.
- **cancels** (:meth:`~PostgresCluster.request_cancel`): a durable mark on the
  run (``cancel_requested``, the first reason) and a ``pg_notify`` to the
  replica that holds it; its heartbeat lists the marks too, so a lost
  notification costs one heartbeat. A pending run nobody holds ends at once.
- **doorbells** (:meth:`~PostgresCluster.listen`): LISTEN on trio's own thread,
  for this replica's cancels and for runs that ended (the next run of their
  thread may start).

These functions block, except the listener's waits; the store runs them in a
worker thread, each in one transaction.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import socket
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Literal

import psycopg
import psycopg.errors
import trio
import trio.lowlevel

from ..errors import StoreError
from ..model import CancelReason, Run
from . import retry
from .interface import Batch, FinalState
from .pg_connection import LEASE_LOST, LeaseLost, PostgresBase
from .pg_queries import PG_RUNS
from .pg_schema import Conn
from .schema import RUNS

# Channels of the doorbells: one per replica for its cancels, one for the queue.
CANCEL_CHANNEL = "runyard_cancel_"
QUEUE_CHANNEL = "runyard_queue"

_DB_NOW = "extract(epoch FROM clock_timestamp())"  # the database's clock, in epoch seconds
_UNFINISHED = "status IN ('pending', 'running')"
_RUN_COLUMNS = ", ".join(f'runs."{c.name}"' for c in RUNS.columns)  # a whole row, for RUNS.load

_JOIN = (
    "INSERT INTO replicas"
    " (replica_id, host, started_at, heartbeat_at, lease_seconds, lease_until)"
    " VALUES (%s, %s, clock_timestamp(), clock_timestamp(), %s,"
    " clock_timestamp() + %s * interval '1 second')"
)
_RENEW = (
    "UPDATE replicas SET heartbeat_at = clock_timestamp(),"
    " lease_until = clock_timestamp() + lease_seconds * interval '1 second'"
    " WHERE replica_id = %s"
)
_FENCE = "SELECT runyard_fence(%s)"  # raises FENCE_SQLSTATE: see pg_schema
_CANCELS = (
    "SELECT run_id, cancel_requested FROM runs"
    f" WHERE replica_id = %s AND {_UNFINISHED} AND cancel_requested IS NOT NULL"
    " ORDER BY queue_seq"
)
_EXPIRED = (
    "WITH expired AS MATERIALIZED ("
    " SELECT replica_id FROM replicas WHERE lease_until < clock_timestamp() AND replica_id <> %s"
    " FOR UPDATE SKIP LOCKED)"
    " DELETE FROM replicas USING expired WHERE replicas.replica_id = expired.replica_id"
    " RETURNING replicas.replica_id"
)
_LEAVE = "DELETE FROM replicas WHERE replica_id = %s RETURNING replica_id"
_HELD_BY_NOBODY = (
    "(runs.replica_id IS NULL OR NOT EXISTS"
    " (SELECT 1 FROM replicas WHERE replicas.replica_id = runs.replica_id))"
)
# Running runs that no live replica holds: those of the replicas just reaped, and
# any left by a process that was not a replica (a crashed exclusive server).
_ORPHANS = RUNS.select(
    f"WHERE status = 'running' AND {_HELD_BY_NOBODY} ORDER BY queue_seq FOR UPDATE SKIP LOCKED"
)
_RELEASE = (
    "WITH orphaned AS MATERIALIZED ("
    " SELECT run_id FROM runs WHERE status = 'pending' AND replica_id IS NOT NULL"
    " AND NOT EXISTS (SELECT 1 FROM replicas WHERE replicas.replica_id = runs.replica_id)"
    " FOR UPDATE SKIP LOCKED)"
    " UPDATE runs SET replica_id = NULL FROM orphaned WHERE runs.run_id = orphaned.run_id"
    " RETURNING runs.run_id, runs.cancel_requested"
)
_OTHERS_WAITING = (
    f"SELECT EXISTS (SELECT 1 FROM runs WHERE thread_id = %s AND run_id <> %s AND {_UNFINISHED})"
)
# A run may start when nothing of its thread is running or ahead of it (FIFO by
# queue_seq); the CTE is materialized so the LIMIT bounds the rows updated.
_CLAIM = (
    "WITH claimable AS MATERIALIZED ("
    " SELECT r.run_id FROM runs r"
    f" WHERE r.status = 'pending' AND r.available_at <= {_DB_NOW}"
    " AND (r.replica_id IS NULL OR (r.replica_id = %(replica)s"
    " AND (%(kept)s::text[] IS NULL OR r.run_id = ANY(%(kept)s::text[]))))"
    " AND (%(only)s::text[] IS NULL OR r.run_id = ANY(%(only)s::text[]))"
    " AND NOT EXISTS (SELECT 1 FROM runs ahead WHERE ahead.thread_id = r.thread_id"
    " AND ahead.run_id <> r.run_id AND (ahead.status = 'running'"
    " OR (ahead.status = 'pending' AND ahead.queue_seq < r.queue_seq)))"
    " ORDER BY r.queue_seq LIMIT %(limit)s FOR UPDATE OF r SKIP LOCKED)"
    " UPDATE runs SET status = 'running', replica_id = %(replica)s, updated_at = %(at)s"
    " FROM claimable WHERE runs.run_id = claimable.run_id"
    f" RETURNING {_RUN_COLUMNS},"
    " (SELECT coalesce(max(seq), -1) + 1 FROM events WHERE events.run_id = runs.run_id),"
    " runs.cancel_requested, runs.queue_seq"
)
# Only runs waiting for after_seconds: those due but behind their thread's line
# start when a run ends, which rings the queue.
_NEXT_DUE = (
    f"SELECT min(available_at) - {_DB_NOW} FROM runs WHERE status = 'pending'"
    f" AND available_at > {_DB_NOW} AND (replica_id IS NULL OR replica_id = %s)"
)
_MARK_CANCEL = (
    "UPDATE runs SET cancel_requested = coalesce(cancel_requested, %s)"
    f" WHERE run_id = %s AND {_UNFINISHED}"
    " RETURNING status, replica_id, cancel_requested"
)
_KEEP = "UPDATE runs SET replica_id = %s, available_at = available_at + %s WHERE run_id = %s"
_HOLD = "UPDATE runs SET replica_id = %s WHERE run_id = ANY(%s)"
_NOTIFY = "SELECT pg_notify(%s, %s)"  # NOTIFY itself takes no bound parameters
# A thread's unfinished runs in the order they run: the running one, then the line.
_LINE = (
    f"SELECT run_id FROM runs WHERE thread_id = %s AND {_UNFINISHED}"
    " ORDER BY status = 'running' DESC, queue_seq"
)
# A run that ended leaves its thread busy while a run of it waits on another replica
# (the replica that ended it knows only its own line).
_STILL_BUSY = (
    "UPDATE threads SET status = 'busy' WHERE thread_id = ANY(%s) AND status <> 'busy'"
    " AND EXISTS (SELECT 1 FROM runs WHERE runs.thread_id = threads.thread_id"
    " AND runs.status IN ('pending', 'running'))"
)
# Thread locks: session advisory locks keyed (runyard's class, the thread id's hash).
# A hash shared by two threads makes them take turns, nothing worse.
_LOCK_CLASS = 0x72790000
_TRY_LOCK = "SELECT pg_try_advisory_lock(%s, hashtext(%s))"
_UNLOCK = "SELECT pg_advisory_unlock(%s, hashtext(%s))"
# How long a thread lock held by another replica is waited for between tries (seconds).
_LOCK_RETRY_FIRST = 0.002
_LOCK_RETRY_MAX = 0.05


@dataclasses.dataclass(frozen=True, slots=True)
class Claim:
    """A run this replica now executes, the cancel asked for it before it started, and
    its log's next seq (its ``metadata`` may be there already)."""

    run: Run
    cancel: CancelReason | None = None
    next_seq: int = 0


@dataclasses.dataclass(frozen=True, slots=True)
class Orphan:
    """A run to end without its replica: its row, its log's next seq, and whether its
    thread goes idle after it (no other run of the thread is waiting)."""

    run: Run
    next_seq: int
    thread_idle_after: bool


# Builds the final state of an orphan ended for a reason (``restart`` when reaped).
Settle = Callable[[Orphan, CancelReason], FinalState]


@dataclasses.dataclass(frozen=True, slots=True)
class Reaped:
    """What one reaping did: the replicas it removed, the runs it ended, the pending
    runs it handed back to the queue."""

    replicas: list[str] = dataclasses.field(default_factory=list)
    ended: list[str] = dataclasses.field(default_factory=list)
    released: list[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass(frozen=True, slots=True)
class Bell:
    """A doorbell: ``cancel`` of a run this replica holds; ``queue``: a run ended, so
    another may start; ``missed``: the listener reconnected and may have missed some."""

    kind: Literal["cancel", "queue", "missed"]
    run_id: str | None = None
    reason: CancelReason | None = None


def _ask(c: Conn, query: str, args: tuple[object, ...]) -> bool:
    row = c.execute(query, args).fetchone()
    return bool(row and row[0])


def cancel_channel(replica_id: str) -> str:
    return CANCEL_CHANNEL + replica_id


# -- the SQL, on one connection -------------------------------------------------------


def renew(c: Conn, replica_id: str) -> list[tuple[str, CancelReason]]:
    """Extend the lease by its length; the cancels asked for the runs the replica holds."""
    if c.execute(_RENEW, (replica_id,)).rowcount != 1:
        raise LeaseLost(LEASE_LOST)
    return [(run_id, CancelReason(reason)) for run_id, reason in c.execute(_CANCELS, (replica_id,))]


def reap(c: Conn, replica_id: str, settle: Settle, *, leaving: bool = False) -> Reaped:
    """Remove the expired replicas (or, ``leaving``, this one), end the running runs
    nobody holds any more and hand back their pending runs (ending those already
    asked to stop)."""
    query = _LEAVE if leaving else _EXPIRED
    replicas = [row[0] for row in c.execute(query, (replica_id,))]
    ended: list[str] = []
    for row in c.execute(_ORPHANS).fetchall():
        run = RUNS.load(row)
        _end(c, run, CancelReason.RESTART, settle)
        ended.append(run.run_id)
    released: list[str] = []
    for run_id, cancel in c.execute(_RELEASE).fetchall():
        if cancel is None:
            released.append(run_id)
            continue
        pending = PG_RUNS.get_run(c, run_id)
        assert pending is not None  # locked by the UPDATE
        _end(c, pending, CancelReason(cancel), settle)
        ended.append(run_id)
    if ended or released:
        c.execute(_NOTIFY, (QUEUE_CHANNEL, ""))
    return Reaped(replicas, ended, released)


def _end(c: Conn, run: Run, reason: CancelReason, settle: Settle) -> None:
    """End a run that no replica executes: ``settle``'s final state, its log continued."""
    (waiting,) = c.execute(_OTHERS_WAITING, (run.thread_id, run.run_id)).fetchone() or (False,)
    orphan = Orphan(run, PG_RUNS.last_seq(c, run.run_id) + 1, thread_idle_after=not waiting)
    PG_RUNS.finish(c, settle(orphan, reason))


def claim(
    c: Conn,
    replica_id: str,
    at: float,
    limit: int,
    run_ids: list[str] | None,
    kept: list[str] | None = None,
) -> list[Claim]:
    """Mark up to ``limit`` runs that may start ``running`` for this replica, FIFO."""
    args = {"replica": replica_id, "at": at, "limit": limit, "only": run_ids, "kept": kept}
    try:
        with c.transaction():  # a savepoint: a lost race leaves the transaction usable
            rows = c.execute(_CLAIM, args).fetchall()
    except psycopg.errors.UniqueViolation:
        return []  # a run of the same thread was marked running meanwhile: next time
    rows.sort(key=lambda row: row[-1])
    return [
        Claim(RUNS.load(row[:-3]), None if row[-2] is None else CancelReason(row[-2]), row[-3])
        for row in rows
    ]


def request_cancel(c: Conn, run_id: str, reason: CancelReason, settle: Settle) -> bool:
    """Mark the run cancelled and ring its replica; end it now if nobody holds it and it
    has not started. False if it is not pending or running."""
    marked = c.execute(_MARK_CANCEL, (reason, run_id)).fetchone()
    if marked is None:
        return False
    status, holder, first = marked
    if holder is not None:
        payload = json.dumps({"run_id": run_id, "reason": first})
        c.execute(_NOTIFY, (cancel_channel(holder), payload))
    elif status == "pending":
        run = PG_RUNS.get_run(c, run_id)
        assert run is not None  # locked by the UPDATE above
        _end(c, run, CancelReason(first), settle)
        c.execute(_NOTIFY, (QUEUE_CHANNEL, ""))
    return True


def committed(c: Conn, batch: Batch, replica_id: str) -> None:
    """The cluster's part of a batch: new runs are kept by this replica (and wait for
    ``after_seconds`` on the database's clock), runs marked running are held by it,
    and ended runs ring the queue."""
    keep = [
        (replica_id, float(run.kwargs.get("after_seconds") or 0.0), run.run_id)
        for run, _ in batch.created
    ]
    if keep:
        c.cursor().executemany(_KEEP, keep)
    if batch.running:
        c.execute(_HOLD, (replica_id, [run_id for run_id, _ in batch.running]))
    if batch.finals:
        c.execute(_STILL_BUSY, ([state.thread_id for state in batch.finals],))
        c.execute(_NOTIFY, (QUEUE_CHANNEL, ""))


# -- the store's part -----------------------------------------------------------------


class PostgresCluster(PostgresBase):
    """What a replica does in a PostgreSQL store; opened with ``cluster=True``."""

    replica_id: str | None = None  # set by join_cluster

    async def join_cluster(self, lease: float) -> str:
        """Join as a new replica whose lease lasts ``lease`` seconds past each heartbeat;
        its id. Every write from now on is fenced by that lease."""
        if not self.cluster:
            raise ValueError("only a store opened with cluster=True joins a cluster")
        replica_id = uuid.uuid4().hex
        host = f"{socket.gethostname()}:{os.getpid()}"
        await self._write(
            lambda c: c.execute(_JOIN, (replica_id, host, lease, lease)), fenced=False
        )
        self.replica_id = replica_id
        return replica_id

    async def heartbeat(self) -> list[tuple[str, CancelReason]]:
        """Renew the lease; the (run id, reason) of cancels asked for the runs this
        replica holds. Raises :class:`LeaseLost` once it was reaped.

        On a connection of its own: a heartbeat never waits behind a write.
        """
        replica_id = self._joined()
        async with self._lease_limiter:
            return await self._attempts(
                lambda: self._transaction(
                    self._lease_link, lambda c: renew(c, replica_id), fenced=False
                ),
                action="write",
            )

    async def reap_replicas(self, settle: Settle) -> Reaped:
        """Reap every replica whose lease expired (see :func:`reap`)."""
        replica_id = self._joined()
        return await self._write(lambda c: reap(c, replica_id, settle))

    async def leave_cluster(self, settle: Settle) -> Reaped:
        """Leave on a clean shutdown: this replica's row goes, a run it still holds ends
        as if it were reaped, its pending runs go back to the queue. Writes are
        refused from then on."""
        replica_id = self._joined()
        return await self._write(lambda c: reap(c, replica_id, settle, leaving=True))

    async def claim_runs(
        self,
        at: float,
        *,
        limit: int,
        run_ids: list[str] | None = None,
        kept: list[str] | None = None,
    ) -> list[Claim]:
        """Take up to ``limit`` runs that may start now (of ``run_ids`` only, if given),
        oldest first, marked running at ``at`` for this replica: runs nobody keeps, and
        those this replica keeps (of ``kept`` only, if given: the runs whose task here
        waits for its turn; one just written may not have its task yet)."""
        replica_id = self._joined()
        return await self._write(lambda c: claim(c, replica_id, at, limit, run_ids, kept))

    async def next_due_in(self) -> float | None:
        """Seconds until the soonest run this replica could claim that waits for its
        ``after_seconds`` falls due; None when no run waits so."""
        replica_id = self._joined()

        def soonest(db: Conn) -> float | None:
            row = db.execute(_NEXT_DUE, (replica_id,)).fetchone()
            return None if row is None or row[0] is None else float(row[0])

        return await self._read(soonest)

    async def line(self, thread_id: str) -> list[str]:
        """Ids of the thread's unfinished runs, wherever they run: the running one first,
        then the rest in the order they will run."""
        return await self._read(lambda c: [row[0] for row in c.execute(_LINE, (thread_id,))])

    @contextlib.asynccontextmanager
    async def thread_lock(self, thread_id: str) -> AsyncIterator[None]:
        """Hold the thread's lock across the cluster (one holder per replica at a time:
        a replica serialises its own tasks first). Waiting polls, with a back-off."""
        key = (_LOCK_CLASS, thread_id)
        delay = _LOCK_RETRY_FIRST
        while not await self._on_lock_link(lambda c: _ask(c, _TRY_LOCK, key)):
            await trio.sleep(delay)
            delay = min(delay * 2, _LOCK_RETRY_MAX)
        try:
            yield
        finally:
            with trio.CancelScope(shield=True):
                try:
                    await self._on_lock_link(lambda c: _ask(c, _UNLOCK, key))
                except StoreError:
                    pass  # the session is gone, and its locks with it

    async def _on_lock_link(self, fn: Callable[[Conn], bool]) -> bool:
        async with self._lock_limiter:
            return await self._attempts(
                lambda: self._unless_closed(self._lock_link).read(fn), action="write"
            )

    async def request_cancel(self, run_id: str, reason: CancelReason, settle: Settle) -> bool:
        """Ask a run to stop, wherever it runs (see :func:`request_cancel`)."""
        return await self._write(lambda c: request_cancel(c, run_id, reason, settle))

    @contextlib.asynccontextmanager
    async def listen(self) -> AsyncIterator[Listener]:
        """This replica's doorbells, on a connection of their own, closed on leaving."""
        listener = Listener(self._conninfo, cancel_channel(self._joined()))
        try:
            await listener.connect()
            yield listener
        finally:
            listener.close()

    def _fence(self, conn: Conn) -> None:
        if not self.cluster:
            return
        if self.replica_id is None:
            raise LeaseLost("this replica has not joined its cluster: it may not write")
        conn.execute(_FENCE, (self.replica_id,))  # in a pipeline, its error comes later

    def _joined(self) -> str:
        if self.replica_id is None:
            raise LeaseLost("this replica has not joined its cluster")
        return self.replica_id


class Listener:
    """LISTEN for one replica's doorbells; :meth:`receive` waits on trio's own thread.

    A connection that breaks is made again (with the back-off of :mod:`.retry`),
    and the next batch says ``missed``: look at the store, a bell may be lost.
    """

    def __init__(self, conninfo: str, cancels: str) -> None:
        self._conninfo = conninfo
        self._cancels = cancels
        self._conn: psycopg.Connection[tuple[object, ...]] | None = None

    async def connect(self) -> None:
        """Connect and LISTEN; :class:`StoreError` if the server cannot be reached."""
        try:
            await trio.to_thread.run_sync(self._connect_sync)
        except psycopg.Error as exc:
            raise StoreError(f"cannot listen for doorbells ({type(exc).__name__})") from exc

    def _connect_sync(self) -> None:
        conn = psycopg.connect(self._conninfo, autocommit=True)
        try:
            for channel in (self._cancels, QUEUE_CHANNEL):
                conn.execute(f'LISTEN "{channel}"')
        except BaseException:
            conn.close()
            raise
        self._conn = conn

    async def receive(self) -> list[Bell]:
        """The next bells, waiting for at least one. Cancelling it loses none."""
        delay = retry.BACKOFF_START
        while True:
            if self._conn is None:
                try:
                    await self.connect()
                except StoreError:
                    await trio.sleep(delay)
                    delay = min(delay * 2, retry.BACKOFF_MAX)
                    continue
                return [Bell("missed")]
            try:
                bells = list(self._bells())
            except psycopg.Error:
                self.close()
                continue
            if bells:
                return bells
            await trio.lowlevel.wait_readable(self._conn.fileno())

    def _bells(self) -> Iterator[Bell]:
        assert self._conn is not None
        for note in self._conn.notifies(timeout=0):
            if note.channel == QUEUE_CHANNEL:
                yield Bell("queue")
            else:
                try:
                    asked = json.loads(note.payload)
                    bell = Bell("cancel", str(asked["run_id"]), CancelReason(asked["reason"]))
                except (ValueError, KeyError, TypeError):
                    continue  # not runyard's: anyone may notify a channel
                yield bell

    def close(self) -> None:
        if self._conn is None:
            return
        with contextlib.suppress(psycopg.Error):  # its socket may be gone already
            trio.lowlevel.notify_closing(self._conn.fileno())
        self._conn.close()
        self._conn = None
