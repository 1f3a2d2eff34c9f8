"""This process as one replica of a cluster on PostgreSQL: its lease, reaping, cancels.

:class:`Replica` is the trio side of :mod:`runyard.store.pg_cluster`. Started
with ``await nursery.start(replica.serve)``, it joins the cluster (a fresh
replica id) and then, until cancelled:

- renews its lease every :data:`HEARTBEAT_SECONDS` on a connection of its
  own, and hands each cancel the heartbeat lists to ``on_cancel`` until it
  takes it (returns True), once per run: a lost doorbell costs at most one
  heartbeat;
- reaps, as often, the replicas whose lease expired: their running runs end
  ``interrupted``/``restart`` (the one :func:`~runyard.outcome.final_state`
  builder writes their ``end``), their pending runs go back to the queue.
  Not while its own lease is stale, and not for one lease after it renewed
  late: when the database was away from every replica, none reaps the others
  before they had the time to renew;
- listens for doorbells: a cancel of a run it holds goes to ``on_cancel`` at
  once; a run that ended anywhere rings :attr:`Replica.queue` and
  :attr:`Replica.ended`.

Once reaped (paused or cut off past its lease) it cannot write anything (the
store's fence) and :meth:`Replica.serve` raises
:class:`~runyard.store.pg_cluster.LeaseLost`: its owner must stop the runs it
held, which other replicas have ended already. Cancelled, ``serve`` leaves
the cluster in a shielded block bounded by :data:`LEAVE_DEADLINE`, so the
others need not wait for its lease to run out; cancel it once this replica's
runs have persisted their final states, since leaving ends any run it still
holds as a reaping would, and hands its pending runs to the others.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

import trio

from .doorbell import Chime, Doorbell
from .errors import StoreError
from .events import RunLog
from .model import CancelReason, RunStatus, now
from .outcome import RESTARTED, Outcome, final_state
from .store import FinalState
from .store.pg_cluster import Bell, Claim, Orphan, Reaped
from .store.pg_connection import LeaseLost
from .store.postgres import PostgresStore

__all__ = [
    "HEARTBEAT_SECONDS",
    "LEASE_SECONDS",
    "Claim",
    "LeaseLost",
    "Reaped",
    "Replica",
    "settle",
]

log = logging.getLogger("runyard.cluster")

# How often a replica renews its lease and looks for expired ones (seconds).
HEARTBEAT_SECONDS = 2.0
# How long a lease lasts past its last renewal (seconds): three missed heartbeats,
# so a busy moment is not a death; an expired replica is reaped within one more
# heartbeat, well inside the 10 s takeover the cluster promises.
LEASE_SECONDS = 3 * HEARTBEAT_SECONDS
# The longest a clean shutdown waits to leave the cluster (seconds).
LEAVE_DEADLINE = 5.0


def settle(orphan: Orphan, reason: CancelReason) -> FinalState:
    """The final state of a run ended without its replica: ``interrupted`` for
    ``reason`` (``restart`` when its replica was reaped), its log continued."""
    outcome = (
        RESTARTED if reason is CancelReason.RESTART else Outcome(RunStatus.INTERRUPTED, reason)
    )
    run_log = RunLog(orphan.run.run_id, next_seq=orphan.next_seq)
    return final_state(
        orphan.run, outcome, run_log, at=now(), thread_idle_after=orphan.thread_idle_after
    )


class Replica:
    """One process of a cluster; ``on_cancel(run_id, reason)`` stops a run it holds
    (False: no such run here yet, so the next heartbeat hands it again)."""

    def __init__(
        self,
        store: PostgresStore,
        on_cancel: Callable[[str, CancelReason], bool],
        *,
        heartbeat: float = HEARTBEAT_SECONDS,
        lease: float = LEASE_SECONDS,
    ) -> None:
        self.store = store
        self.queue = Doorbell()  # rung when a run ended: another may start now
        self.ended = Chime()  # rung as well, for whoever waits for a run of another replica
        self._on_cancel = on_cancel
        self._heartbeat = heartbeat
        self._lease = lease
        self._cancelled: set[str] = set()  # runs whose cancel on_cancel took
        self._renewed_at: float | None = None  # when the lease was last renewed (trio time)
        self._reap_from = -math.inf  # no reaping before (trio time): see _renewed

    @property
    def replica_id(self) -> str:
        assert self.store.replica_id is not None, "serve() joins first"
        return self.store.replica_id

    async def serve(self, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
        """Join, start with the replica id, then keep the lease until cancelled (and
        leave) or lost (:class:`LeaseLost`)."""
        replica_id = await self.store.join_cluster(self._lease)
        self._renewed_at = trio.current_time()  # joining leases
        log.info("replica.joined", extra={"replica_id": replica_id})
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._keep_lease)
                nursery.start_soon(self._reap_expired)
                await nursery.start(self._answer_doorbells)
                task_status.started(replica_id)
        except* LeaseLost as lost:
            log.error("replica.lost", extra={"replica_id": replica_id})
            raise lost.exceptions[0] from None
        finally:
            with trio.move_on_after(LEAVE_DEADLINE, shield=True):
                await self._leave()

    async def claim(
        self, *, limit: int, run_ids: list[str] | None = None, kept: list[str] | None = None
    ) -> list[Claim]:
        """Runs that may start now, marked running here (see ``claim_runs``); a claim
        with a ``cancel`` is a run to end at once, without starting it."""
        return await self.store.claim_runs(now(), limit=limit, run_ids=run_ids, kept=kept)

    async def cancel(self, run_id: str, reason: CancelReason) -> bool:
        """Ask a run to stop wherever it runs; False if it is not pending or running."""
        return await self.store.request_cancel(run_id, reason, settle)

    async def reap(self) -> Reaped:
        """Reap every replica whose lease expired, now."""
        reaped = await self.store.reap_replicas(settle)
        if reaped.replicas or reaped.ended:
            log.warning(
                "replica.reaped",
                extra={"replicas": reaped.replicas, "ended": reaped.ended},
            )
        return reaped

    # -- the loops ------------------------------------------------------------------

    async def _keep_lease(self) -> None:
        """Renew the lease every heartbeat; a failed renewal is tried again at the next."""
        while True:
            due = trio.current_time() + self._heartbeat
            known = set(self._cancelled)  # a doorbell may deliver more while we read
            try:
                cancels = await self.store.heartbeat()
            except LeaseLost:
                raise
            except StoreError as exc:
                log.warning("replica.heartbeat_failed", extra={"error": exc.detail})
            else:
                self._renewed()
                for run_id, reason in cancels:
                    self._deliver(run_id, reason)
                # Forget what no longer waits, but only what was known before the read:
                # a cancel delivered meanwhile is not in this older answer yet.
                self._cancelled -= known - {run_id for run_id, _ in cancels}
            await trio.sleep_until(due)

    def _renewed(self) -> None:
        """A renewal landed. After one lease or more without (the database was away, for
        this replica and likely for the others too), reaping waits one more lease:
        the others, their leases run out meanwhile, get the time to renew theirs."""
        at = trio.current_time()
        if self._renewed_at is not None and at - self._renewed_at > self._lease:
            self._reap_from = at + self._lease
            log.warning("replica.renewed_late", extra={"reaping_in": self._lease})
        self._renewed_at = at

    def _may_reap(self) -> bool:
        """Whether this replica's own lease is fresh, and no outage of its own is recent."""
        at = trio.current_time()
        fresh = self._renewed_at is not None and at - self._renewed_at <= self._lease
        return fresh and at >= self._reap_from

    async def _reap_expired(self) -> None:
        """Reap every heartbeat (see :meth:`_may_reap`); apart from renewing, which must
        never wait behind it."""
        while True:
            due = trio.current_time() + self._heartbeat
            if not self._may_reap():
                await trio.sleep_until(due)
                continue
            try:
                await self.reap()
            except LeaseLost:
                raise
            except StoreError as exc:
                log.warning("replica.reap_failed", extra={"error": exc.detail})
            await trio.sleep_until(due)

    async def _answer_doorbells(self, *, task_status: trio.TaskStatus[None]) -> None:
        async with self.store.listen() as listener:
            task_status.started()
            while True:
                for bell in await listener.receive():
                    self._answer(bell)

    def _answer(self, bell: Bell) -> None:
        if bell.kind == "cancel":
            assert bell.run_id is not None
            assert bell.reason is not None
            self._deliver(bell.run_id, bell.reason)
        else:  # a run ended, or bells may have been missed: the queue may have moved
            self.queue.ring()
            self.ended.ring()

    def _deliver(self, run_id: str, reason: CancelReason) -> None:
        if run_id not in self._cancelled and self._on_cancel(run_id, reason):
            self._cancelled.add(run_id)

    async def _leave(self) -> None:
        try:
            await self.store.leave_cluster(settle)
        except LeaseLost:
            pass  # reaped already: nothing left to hand back
        except StoreError as exc:
            log.warning("replica.leave_failed", extra={"error": exc.detail})
        else:
            log.info("replica.left", extra={"replica_id": self.store.replica_id})
