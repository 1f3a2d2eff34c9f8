"""The :class:`~runyard.coordinator.Coordinator` of one replica among several on PostgreSQL.

The promises are the local coordinator's; what keeps them across replicas:

- **the line** is the runs table: a new run's replica keeps it (its task
  waits here) and starts it only once the database says so, through the
  claim loop (:meth:`ClusterCoordinator.take_runs`): a pending run may start
  when its ``after_seconds`` have passed and nothing of its thread is
  running or ahead of it, wherever that runs. The claim loop also takes the
  runs nobody keeps (those of a replica that died or left) and starts them
  here, its log continued.
- **a thread's lock** is this process's lock and then the cluster's (a
  session advisory lock), so ``reject`` answers 409 once for concurrent
  creates on two replicas, and a new run takes its place in the line under
  it (FIFO by the database's ``queue_seq``). A run with nothing ahead of it
  and no delay is still marked running with its row, as on one server.
- **a cancel** of a run another replica executes is a durable mark and a
  doorbell to that replica (its heartbeat lists the mark as well, so a lost
  doorbell costs a heartbeat); a pending run nobody holds ends at once.
- **waiting** for a run of another replica reads its row again whenever a
  run ends anywhere (the queue's doorbell), and at least every
  :data:`ENDED_POLL` seconds.
- **the lease**: :meth:`ClusterCoordinator.serve` keeps this replica joined
  (:class:`~runyard.cluster.Replica`). Reaped while it was paused or cut
  off, it stops every run it held (other replicas ended them already, and
  its writes are refused), and the process ends (the server exits with
  status 1): its process manager starts a fresh replica.

Recovery at start has nothing to do: a replica's runs are ended by the
others when its lease runs out, and its pending runs are claimed anew.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

import trio

from .cluster import HEARTBEAT_SECONDS, Claim, LeaseLost, Replica
from .config import Settings
from .coordinator import LocalCoordinator
from .errors import StoreError
from .model import CancelReason, Run, now
from .runtable import RunHandle, RunTable
from .store.postgres import PostgresStore

log = logging.getLogger("runyard.cluster")

# The longest a wait for a run of another replica goes without reading its row
# again, should the doorbell of its end be lost (seconds).
ENDED_POLL = 1.0

# Starts, on this replica, a run the claim loop took that no task here waits for.
StartClaimed = Callable[[Claim], Awaitable[None]]


class ClusterCoordinator(LocalCoordinator):
    """Lines in the database, locks across replicas, cancels by doorbell and heartbeat."""

    def __init__(self, table: RunTable, store: PostgresStore, settings: Settings) -> None:
        super().__init__(table, store)
        self._pg = store
        self._settings = settings
        self.replica = Replica(store, self._cancel_here)
        self._turns: dict[str, trio.Event] = {}  # runs kept here, waiting to be claimed
        self._nursery: trio.Nursery | None = None  # for cancels sent without waiting
        self.lease_lost = trio.Event()  # set once this replica was reaped: the process ends

    # -- lifetime -----------------------------------------------------------------

    async def serve(self, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
        """Join the cluster, start with the replica id, keep the lease until cancelled.

        Should the lease be lost, the runs held here stop (their final writes
        are refused: the replica that reaped this one wrote theirs) and
        :attr:`lease_lost` is set: the process must end, and a fresh one join.
        Rejoining in place would let what the old lease left in flight (a
        write queued, an agent slow to stop) land under the new one.
        """
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            try:
                await self.replica.serve(task_status=task_status)
            except LeaseLost:
                await self._stop_held_runs()
                self.lease_lost.set()
                await trio.sleep_forever()  # until the process, stopping, cancels it

    async def _stop_held_runs(self) -> None:
        """Cancel every run held here and wait (bounded) for their tasks to end."""
        held = [h for h in self._table if not h.finished.is_set()]
        log.error("replica.stopping_held_runs", extra={"runs": len(held)})
        for handle in held:
            handle.cancel(CancelReason.RESTART)
        with trio.move_on_after(self._settings.cleanup_deadline + 1.0):
            await self._table.wait_idle()

    async def take_runs(self, start_claimed: StartClaimed, accepting: Callable[[], bool]) -> None:
        """The claim loop, until cancelled: start each run whose turn has come, the
        runs kept here and, while ``accepting()``, those nobody keeps (a replica
        shutting down leaves them to the others); look again whenever a run ends
        anywhere, a run here waits, or a delayed run falls due (at least every
        heartbeat)."""
        while True:
            await self._claim(start_claimed, accepting)
            await self.replica.queue.nap(HEARTBEAT_SECONDS, self._next_due)

    async def _claim(self, start_claimed: StartClaimed, accepting: Callable[[], bool]) -> None:
        while True:
            taking = accepting()
            room = len(self._turns)
            if taking:
                room += max(0, self._settings.max_active_runs - self._table.live)
            if room <= 0:
                return
            try:
                # Of the runs kept here, only those whose task waits: a run just written
                # by its admission has no task yet, and must not get a second one.
                waiting = list(self._turns)
                claims = await self.replica.claim(
                    limit=room, kept=waiting, run_ids=None if taking else waiting
                )
            except StoreError as exc:  # LeaseLost too: serve() stops the runs, the process ends
                log.warning("replica.claim_failed", extra={"error": exc.detail})
                return
            for claim in claims:
                run_id = claim.run.run_id
                turn = self._turns.pop(run_id, None)
                handle = self._table.get(run_id)
                if turn is not None:
                    self._grant(run_id, claim, turn)
                elif handle is None or handle.finished.is_set():
                    # Nobody kept it (its replica died or left); or a task here ended
                    # without its final state landing, and the store says it waits.
                    await start_claimed(claim)
                # else its task here is ending it: its final state lands after the claim
            if len(claims) < room:
                return

    def _grant(self, run_id: str, claim: Claim, turn: trio.Event) -> None:
        handle = self._table.get(run_id)
        if handle is None:
            return
        handle.running_at = claim.run.updated_at  # the claim committed the running mark
        if claim.cancel is not None:
            handle.cancel(claim.cancel)
        turn.set()

    async def _next_due(self) -> float | None:
        due_in = await self._pg.next_due_in()
        return None if due_in is None else now() + due_in

    # -- the line -----------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def lock_thread(self, thread_id: str) -> AsyncIterator[None]:
        async with super().lock_thread(thread_id), self._pg.thread_lock(thread_id):
            yield

    async def unfinished(self, thread_id: str) -> list[str]:
        return await self._pg.line(thread_id)

    def join_line(self, handle: RunHandle) -> None:
        super().join_line(handle)
        if handle.running_at is None:
            self._turns[handle.run_id] = trio.Event()
            self.replica.queue.ring()

    async def wait_turn(self, handle: RunHandle) -> None:
        turn = self._turns.get(handle.run_id)
        if turn is not None:
            await turn.wait()

    def leave_line(self, handle: RunHandle) -> None:
        super().leave_line(handle)
        self._turns.pop(handle.run_id, None)

    # -- cancels and waits --------------------------------------------------------

    def _cancel_here(self, run_id: str, reason: CancelReason) -> bool:
        """A cancel the doorbell or the heartbeat brought; False: no task here has the
        run yet (a claim in flight), so the next heartbeat brings it again."""
        handle = self._table.get(run_id)
        if handle is None:
            return False
        handle.cancel(reason)
        return True

    def cancel(self, run_id: str, reason: CancelReason) -> bool:
        if super().cancel(run_id, reason):
            return True
        if self._table.get(run_id) is None and self._nursery is not None:
            self._nursery.start_soon(self._stop_quietly, run_id, reason)
        return False

    async def _stop_quietly(self, run_id: str, reason: CancelReason) -> None:
        try:
            await self.stop(run_id, reason)
        except StoreError as exc:
            log.warning("run.cancel_not_sent", extra={"run_id": run_id, "error": exc.detail})

    async def stop(self, run_id: str, reason: CancelReason) -> bool:
        if super().cancel(run_id, reason):
            return True
        if self._table.get(run_id) is not None:
            return False  # it ended here
        return await self.replica.cancel(run_id, reason)

    async def wait_ended(self, run_id: str) -> None:
        while self._table.get(run_id) is None:
            rung = self.replica.ended.next_ring()  # before the read: no end slips between
            run = await self._pg.get_run(run_id)
            if run is not None and run.status.terminal:
                break
            if run is None:
                return
            with trio.move_on_after(ENDED_POLL):
                await rung.wait()
        # Executed here (claimed meanwhile, perhaps): its handle is set once the final
        # state is applied in memory too, a moment after the store has it.
        await super().wait_ended(run_id)

    async def orphaned_runs(self) -> list[Run]:
        return []  # the other replicas end or claim a dead replica's runs
