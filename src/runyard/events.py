"""Per-run event logs and their fan-out to subscribers.

A :class:`RunLog` holds what has been *published* of one live run: its
highest published ``seq`` and a tail of recent events in memory. The commit
writer publishes into it only what the store has committed (in the default
durability mode), in ``seq`` order.

Each subscriber owns a bounded memory channel. Publishing never waits: when a
subscriber's channel is full, the log closes that channel and forgets it, and
the subscriber, once it has drained what it holds, catches up from the tail
or the store and attaches again. So a slow reader costs the run and the
other readers nothing, and it still misses nothing.

While :meth:`LocalEventBus.keep_alive` runs, one timer serves every stream's
heartbeat: the subscribers of a run quiet for a heartbeat interval get an
empty batch (a *poke*), which ``next(pokes=True)`` hands on. Without it each
stream needs a timeout of its own on every wait, and at LLM token rates that
timer cost about a tenth of the server's time per event (docs/capacity.md).
"""

from __future__ import annotations

import collections
import math
from collections.abc import Callable, Iterable
from typing import Protocol

import trio

from .model import Event
from .store import Store

# Batches a subscriber may fall behind before it is switched to catching up.
SUBSCRIBER_BUFFER = 256
# Events a live run keeps in memory for subscribers that join or lag.
TAIL_EVENTS = 4096
# Events one catch-up read takes from the store.
STORE_PAGE = 1000


class RunLog:
    """The published part of one run's log, and its live subscribers."""

    def __init__(self, run_id: str, *, next_seq: int = 0, keep_all: bool = False) -> None:
        self.run_id = run_id
        self.next_seq = next_seq  # assigned by the writer when an event is appended
        self.published = next_seq - 1
        self.ended = False
        self.active_at = -math.inf  # trio time of the last publish or poke
        self._tail: collections.deque[Event] = collections.deque(
            maxlen=None if keep_all else TAIL_EVENTS
        )
        self._subscribers: set[trio.MemorySendChannel[list[Event]]] = set()

    def take_seq(self) -> int:
        seq = self.next_seq
        self.next_seq += 1
        return seq

    def publish(self, events: list[Event]) -> None:
        """Hand committed events (consecutive, in order) to every subscriber."""
        if not events or self.ended:
            return
        self._tail.extend(events)
        self.published = events[-1].seq
        self.active_at = trio.current_time()
        self._send(events)
        if events[-1].event == "end":
            self.ended = True
            self.close()

    def close(self) -> None:
        """End every subscriber's channel without an ``end``: each catches up from the store."""
        for send in self._subscribers:
            send.close()
        self._subscribers.clear()

    def poke(self, now: float) -> None:
        """Wake every subscriber with an empty batch (its stream sends a heartbeat)."""
        if not self.ended:
            self.active_at = now
            self._send([])

    def _send(self, events: list[Event]) -> None:
        for send in list(self._subscribers):
            try:
                send.send_nowait(events)
            except trio.WouldBlock:
                # Too slow: it will catch up from the tail or the store.
                self._subscribers.discard(send)
                send.close()
            except trio.BrokenResourceError:
                # The subscriber went away (its client disconnected).
                self._subscribers.discard(send)

    def attach(self) -> trio.MemoryReceiveChannel[list[Event]] | None:
        """A channel of every batch published from now on; None once ended."""
        if self.ended:
            return None
        send, receive = trio.open_memory_channel[list[Event]](SUBSCRIBER_BUFFER)
        self._subscribers.add(send)
        return receive

    def tail_after(self, after_seq: int) -> list[Event] | None:
        """Published events after ``after_seq`` from memory; None if memory lacks some."""
        if after_seq >= self.published:
            return []
        if not self._tail or self._tail[0].seq > after_seq + 1:
            return None
        start = after_seq + 1 - self._tail[0].seq
        return [self._tail[i] for i in range(start, len(self._tail))]

    def events(self) -> list[Event]:
        return list(self._tail)

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)


class EventBus(Protocol):
    """How runs' events reach subscribers; all a :class:`Subscription` reads through.

    The writer side (``open``, ``get``, ``forget``) holds the live logs of the
    runs this process executes; the reader side (``attach``, ``recent``,
    ``stored``) is what a subscriber needs, wherever the run executes.
    """

    def open(self, run_id: str, *, next_seq: int = 0) -> RunLog:
        """A live log for a run this process executes, its next event numbered ``next_seq``."""

    def get(self, run_id: str) -> RunLog | None: ...
    def forget(self, run_id: str) -> None: ...

    def subscribe(self, run_id: str, after_seq: int = -1) -> Subscription:
        """Every event of the run after ``after_seq``, to its end."""

    @property
    def keeps_alive(self) -> bool:
        """Whether quiet runs' subscribers are poked now (:meth:`keep_alive` is running)."""

    async def keep_alive(
        self, interval: float, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Poke the subscribers of every run quiet for ``interval`` s, until cancelled."""

    def attach(self, run_id: str) -> trio.MemoryReceiveChannel[list[Event]] | None:
        """A channel of the run's batches published from now on; None if none will be."""

    def recent(self, run_id: str, after_seq: int) -> list[Event] | None:
        """Published events after ``after_seq`` from memory; None if memory lacks some."""

    async def stored(self, run_id: str, after_seq: int, limit: int) -> list[Event]:
        """Up to ``limit`` committed events after ``after_seq``, from the store."""


class LocalEventBus:
    """The in-process :class:`EventBus`: logs in a dict, fan-out by memory channels."""

    def __init__(self, store: Store, *, keep_all: bool = False) -> None:
        self._store = store
        self._keep_all = keep_all  # final-state durability: memory is the only copy
        self._logs: dict[str, RunLog] = {}
        self._keeping = 0  # keep_alive tasks running

    def open(self, run_id: str, *, next_seq: int = 0) -> RunLog:
        log = RunLog(run_id, next_seq=next_seq, keep_all=self._keep_all)
        self._logs[run_id] = log
        return log

    def get(self, run_id: str) -> RunLog | None:
        return self._logs.get(run_id)

    def forget(self, run_id: str) -> None:
        self._logs.pop(run_id, None)

    def subscribe(self, run_id: str, after_seq: int = -1) -> Subscription:
        return Subscription(self, run_id, after_seq)

    @property
    def keeps_alive(self) -> bool:
        return self._keeping > 0

    async def keep_alive(
        self, interval: float, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Every half ``interval``, poke the runs no event reached for ``interval``.

        A stream so hears from its run at least every 1.5 ``interval``. Cancel
        it to stop; streams then go back to timers of their own.
        """
        self._keeping += 1
        try:
            task_status.started()
            while True:
                await trio.sleep(interval / 2)
                now = trio.current_time()
                for run_log in self._quiet_candidates():
                    if now - run_log.active_at >= interval:
                        run_log.poke(now)
        finally:
            self._keeping -= 1

    def _quiet_candidates(self) -> Iterable[RunLog]:
        """The logs whose subscribers a quiet spell pokes."""
        return list(self._logs.values())

    def attach(self, run_id: str) -> trio.MemoryReceiveChannel[list[Event]] | None:
        log = self._logs.get(run_id)
        return None if log is None else log.attach()

    def recent(self, run_id: str, after_seq: int) -> list[Event] | None:
        log = self._logs.get(run_id)
        return None if log is None else log.tail_after(after_seq)

    async def stored(self, run_id: str, after_seq: int, limit: int) -> list[Event]:
        return await self._store.read_events(run_id, after_seq, limit)


class Subscription:
    """Every event of a run with ``seq > after_seq``, in order, ending after ``end``.

    :meth:`next` may be cancelled at any point (for a heartbeat timeout, say)
    and called again: nothing is lost or repeated, because the position lives
    here and a memory channel's ``receive`` is cancel-safe.
    """

    def __init__(self, bus: EventBus, run_id: str, after_seq: int) -> None:
        self._bus = bus
        self.run_id = run_id
        self.last_seq = after_seq
        self.done = False
        self._receive: trio.MemoryReceiveChannel[list[Event]] | None = None
        self._catching_up = True
        self.on_close: Callable[[], None] | None = None  # called once, by close()

    @property
    def kept_alive(self) -> bool:
        """Whether its bus pokes it when the run is quiet (see :meth:`next`)."""
        return self._bus.keeps_alive

    async def next(self, *, pokes: bool = False) -> list[Event] | None:
        """The next batch of events, or None when the log has ended.

        With ``pokes``, an empty list when the bus pokes a quiet run's
        subscribers; otherwise pokes are passed over.
        """
        while not self.done:
            if self._catching_up:
                batch = await self._catch_up()
                if batch:
                    return self._deliver(batch)
                self._catching_up = False
                if self._receive is None:
                    # Not live, and the store has nothing more: the run is gone.
                    self.done = True
                    return None
            assert self._receive is not None
            try:
                batch = self._join_waiting(await self._receive.receive())
            except trio.EndOfChannel:
                # We lagged and were dropped, or the log ended: catch up.
                self._receive = None
                self._catching_up = True
                continue
            fresh = [e for e in batch if e.seq > self.last_seq]
            if fresh:
                return self._deliver(fresh)
            if pokes and not batch:
                return []
        return None

    def _join_waiting(self, batch: list[Event]) -> list[Event]:
        """``batch`` and the batches already waiting behind it, as one.

        A run publishing event by event (final-state durability) then costs
        its readers one write per wake-up rather than one per event. Should
        the channel end meanwhile, the next call catches up.
        """
        assert self._receive is not None
        joined: list[Event] | None = None
        while True:
            try:
                more = self._receive.receive_nowait()
            except trio.WouldBlock:
                break
            except trio.EndOfChannel:
                self._receive = None
                self._catching_up = True
                break
            if joined is None:
                joined = list(batch)  # batches are shared by every subscriber
            joined.extend(more)
        return batch if joined is None else joined

    async def _catch_up(self) -> list[Event]:
        if self._receive is None:
            # Attach before reading, so nothing published meanwhile slips between.
            self._receive = self._bus.attach(self.run_id)
        batch = self._bus.recent(self.run_id, self.last_seq)
        if batch is not None:
            return batch
        return await self._bus.stored(self.run_id, self.last_seq, STORE_PAGE)

    def _deliver(self, batch: list[Event]) -> list[Event]:
        self.last_seq = batch[-1].seq
        if batch[-1].event == "end":
            self.close()
        return batch

    def close(self) -> None:
        self.done = True
        if self._receive is not None:
            self._receive.close()
            self._receive = None
        if self.on_close is not None:
            on_close, self.on_close = self.on_close, None
            on_close()

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> list[Event]:
        batch = await self.next()
        if batch is None:
            raise StopAsyncIteration
        return batch
