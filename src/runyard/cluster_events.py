"""Events of runs that other replicas execute, read from the shared store.

A subscriber on this replica to a run executing elsewhere reads the run's
committed events from PostgreSQL: one follower task per such run reads what
was committed since it last looked, every :data:`FOLLOW_POLL` seconds (or at
once when a run ends anywhere), and publishes it into a :class:`RunLog` of
its own, which fans out to this replica's subscribers exactly as a local
run's log does. So however many clients follow a remote run through this
replica, the store is read once per poll, and resume by ``Last-Event-ID``
works as anywhere: ids are the stored ``seq``.

With a fan-out (:mod:`runyard.fanout`, Redis) up, the follower publishes
the events the executing replica pushes as soon as they come, and reads the
store only when they leave a gap, or after :data:`FOLLOW_CHECK` seconds of
quiet; while the fan-out is down it polls as above.

A follower starts at the log's newest committed event (a subscriber catches
up from the store by itself), stops at ``end``, when nobody listens any
more, or when the run turns out to be gone; runs the store says are gone are
remembered for a while, so their subscribers end at once.
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Callable, Iterable

import trio

from .errors import StoreError
from .events import STORE_PAGE, LocalEventBus, RunLog
from .fanout import FanOut
from .model import Event
from .store import Store

log = logging.getLogger("runyard.events")

# How often a follower reads a remote run's new events (seconds): the added
# latency of a stream through a replica that does not execute its run.
FOLLOW_POLL = 0.1
# How often a follower with nothing new checks that its run still exists (seconds).
FOLLOW_CHECK = 1.0
# Remote runs found gone that are remembered, so their subscribers end at once.
GONE_REMEMBERED = 4096


class ClusterEventBus(LocalEventBus):
    """The local bus, and followers for the runs other replicas execute.

    ``ended`` gives what a run's end anywhere sets (a follower then looks at once).
    """

    def __init__(
        self,
        store: Store,
        ended: Callable[[], trio.Event],
        fanout: FanOut | None = None,
        *,
        keep_all: bool = False,
    ) -> None:
        super().__init__(store, keep_all=keep_all)
        self._ended = ended
        self._fanout = fanout
        self._remote: dict[str, RunLog] = {}
        self._ready: set[str] = set()  # remote logs whose starting point is known
        self._gone: collections.deque[str] = collections.deque(maxlen=GONE_REMEMBERED)
        # Events followers published, by where they came from: "store" or "fanout".
        self.followed: collections.Counter[str] = collections.Counter()
        self._nursery: trio.Nursery | None = None
        self._waiting: dict[str, trio.CancelScope] = {}  # followers' waits, by run

    async def keep_alive(
        self, interval: float, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """The local bus's pokes, for remote runs too, and the followers' nursery."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self._wake_on_ends)
            try:
                await super().keep_alive(interval, task_status=task_status)
            finally:
                self._nursery = None

    def _quiet_candidates(self) -> Iterable[RunLog]:
        return [*super()._quiet_candidates(), *self._remote.values()]

    def attach(self, run_id: str) -> trio.MemoryReceiveChannel[list[Event]] | None:
        if self.get(run_id) is not None:
            return super().attach(run_id)
        remote = self._remote.get(run_id)
        if remote is None:
            if run_id in self._gone or self._nursery is None:
                return None
            remote = self._remote[run_id] = RunLog(run_id)
            self._nursery.start_soon(self._follow, remote, name=f"follow {run_id}")
        return remote.attach()

    def recent(self, run_id: str, after_seq: int) -> list[Event] | None:
        if self.get(run_id) is not None:
            return super().recent(run_id, after_seq)
        remote = self._remote.get(run_id)
        if remote is None or run_id not in self._ready:
            return None  # the store has it
        return remote.tail_after(after_seq)

    async def _follow(self, remote: RunLog) -> None:
        run_id = remote.run_id
        pushed = None if self._fanout is None else self._fanout.listen(run_id)
        try:
            remote.published = await self._store.last_seq(run_id)
            remote.next_seq = remote.published + 1
            self._ready.add(run_id)
            checked = trio.current_time()
            read = True
            while not remote.ended:
                if remote.subscriber_count == 0:
                    return
                rung = self._ended()
                if read:
                    events = await self._store.read_events(run_id, remote.published, STORE_PAGE)
                    remote.publish(events)
                    self.followed["store"] += len(events)
                    if len(events) == STORE_PAGE:
                        continue
                    if not events and trio.current_time() - checked >= FOLLOW_CHECK:
                        checked = trio.current_time()
                        if await self._gone_for_good(run_id, remote.published):
                            self._gone.append(run_id)
                            return
                read = await self._wait(remote, rung, pushed)
        except StoreError as exc:
            # Its subscribers catch up from the store and follow again.
            log.warning("events.follow_failed", extra={"run_id": run_id, "error": exc.detail})
        finally:
            if pushed is not None:
                pushed.close()
            remote.close()
            self._ready.discard(run_id)
            if self._remote.get(run_id) is remote:
                del self._remote[run_id]

    async def _wait(
        self,
        remote: RunLog,
        rung: trio.Event,
        pushed: trio.MemoryReceiveChannel[list[Event]] | None,
    ) -> bool:
        """Wait for news of the run: what the fan-out pushes, a run's end anywhere (a
        reaper's ``end`` is never pushed), or the time to look again. Whether the
        store must be read (False: what was pushed continued the log, and was published)."""
        if rung.is_set():  # a run ended since the caller's look at the store
            return True
        polling = pushed is None or self._fanout is None or not self._fanout.up
        with trio.move_on_after(FOLLOW_POLL if polling else FOLLOW_CHECK) as waiting:
            self._waiting[remote.run_id] = waiting  # _wake_on_ends cancels it
            try:
                if polling:
                    await trio.sleep_forever()
                assert pushed is not None
                batch = await pushed.receive()
            finally:
                del self._waiting[remote.run_id]
            fresh = [e for e in batch if e.seq > remote.published]
            if fresh and fresh[0].seq == remote.published + 1:
                remote.publish(fresh)
                self.followed["fanout"] += len(fresh)
                return False
        return True  # a gap (messages lost), a run ended, or quiet for a while

    async def _wake_on_ends(self) -> None:
        """Whenever a run ends anywhere, every follower looks at the store."""
        while True:
            await self._ended().wait()
            for waiting in self._waiting.values():
                waiting.cancel()

    async def _gone_for_good(self, run_id: str, published: int) -> bool:
        """Whether the run was deleted, or ended without more events to come."""
        run = await self._store.get_run(run_id)
        if run is None:
            return True
        return run.status.terminal and await self._store.last_seq(run_id) <= published
