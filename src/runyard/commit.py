"""Group commit: one writer task turns many runs' events into few transactions.

Runs append events without waiting for the disk. The writer takes everything
queued so far (up to :data:`MAX_BATCH` events), commits it in one
transaction, and only then publishes it to the run logs, in order. While one
transaction is in flight the next batch accumulates, so the batch size grows
with the load by itself and an idle server commits each event at once.

A run's final state goes through the same queue, behind the run's own
events, so its ``end`` is committed and published after everything it emitted
and finals of many runs (at shutdown, say) share transactions too. So do a
new run's row (with its new thread) and the ``running`` mark each run waits
for before its agent starts: a burst of runs created together shares a few
transactions instead of several each.

With ``durable=False`` (final-state durability) events are published at once
and only written with the run's final state.

A database that cannot be reached (:class:`~runyard.errors.StoreUnavailable`:
PostgreSQL restarting, say) does not fail a batch at once: the writer holds
it and tries again, backing off, for ``outage_grace`` seconds from the first
failure, while new events queue behind it (emitting runs wait once
:data:`MAX_PENDING` are queued). New runs are refused meanwhile, at once. Past
the grace every batch that fails is failed as any other (its runs end with
``error_details``), until one commits again.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections import defaultdict
from collections.abc import Callable

import trio

from .errors import StoreError, StoreUnavailable
from .events import RunLog
from .fanout import FanOut
from .model import JSON, Event, Run, Thread, dumps
from .stats import CommitStats
from .store import Batch, CheckpointRow, FinalState, Store, WriteRow

log = logging.getLogger("runyard.commit")

# Events in one transaction at most; larger batches stop paying for themselves.
MAX_BATCH = 1024
# Events queued but not yet committed before emitting runs have to wait.
MAX_PENDING = 16384
# Seconds between two tries of a batch while the database cannot be reached:
# the first wait, and the longest.
OUTAGE_RETRY_FIRST = 0.1
OUTAGE_RETRY_MAX = 2.0


@dataclasses.dataclass(slots=True)
class _Final:
    log: RunLog
    state: FinalState
    done: trio.Event = dataclasses.field(default_factory=trio.Event)
    error: StoreError | None = None
    counted: int = 0  # what it added to the writer's pending count


@dataclasses.dataclass(slots=True)
class _Row:
    """A run's new row (``created``), its running mark, or a graph's checkpoint
    rows; whoever queued it may wait for its commit."""

    created: tuple[Run, Thread | None] | None = None
    running: tuple[str, float] | None = None
    first: Event | None = None  # the created run's first event
    checkpoints: list[CheckpointRow] = dataclasses.field(default_factory=list)
    writes: list[WriteRow] = dataclasses.field(default_factory=list)
    sticky: bool = False  # commits in the same transaction as the events queued before it
    done: trio.Event = dataclasses.field(default_factory=trio.Event)
    error: StoreError | None = None

    async def wait(self) -> None:
        """Until committed; raises :class:`StoreError` if it could not be."""
        await self.done.wait()
        if self.error is not None:
            raise self.error


_Op = tuple[RunLog, Event] | _Final | _Row


class CommitWriter:
    """The single writer of events and final states. Start with ``nursery.start(w.serve)``."""

    def __init__(self, store: Store, *, durable: bool = True, outage_grace: float = 0.0) -> None:
        self.store = store
        self.durable = durable
        self.outage_grace = outage_grace
        # When the database last became unreachable; None while it answers.
        self.outage_since: float | None = None
        self._queue: list[_Op] = []
        self._batch: list[_Op] = []  # the batch being committed
        self._pending = 0
        self._wakeup = trio.Event()
        self._room = trio.Event()
        self._closing = False
        self._stopped = trio.Event()
        # Events whose commit failed, by run: written again with the run's final state.
        self._lost: dict[str, list[Event]] = defaultdict(list)
        # Called with a run id whose events could not be stored (the run should fail).
        self.on_lost: Callable[[str], None] = lambda run_id: None
        self.fanout: FanOut | None = None  # pushes committed events to other replicas
        self.transactions = 0
        self.stats = CommitStats()

    # -- producers ------------------------------------------------------------

    def append_nowait(self, run_log: RunLog, event: str, data: JSON) -> Event:
        """Give the event the log's next seq and queue it (or publish it, non-durable)."""
        return self.append_text_nowait(run_log, event, dumps(data))

    def append_text_nowait(self, run_log: RunLog, event: str, text: str) -> Event:
        """:meth:`append_nowait` for data already encoded as JSON text."""
        ev = Event.from_text(run_log.run_id, run_log.take_seq(), event, text)
        if not self.durable:
            run_log.publish([ev])
            return ev
        self._queue.append((run_log, ev))
        self._pending += 1
        self._wakeup.set()
        return ev

    @property
    def full(self) -> bool:
        return self._pending >= MAX_PENDING

    @property
    def pending(self) -> int:
        """Events queued and not yet committed."""
        return self._pending

    @property
    def holding(self) -> bool:
        """Whether a batch waits for the database to answer again (within the grace)."""
        since = self.outage_since
        return since is not None and trio.current_time() - since < self.outage_grace

    async def wait_for_room(self) -> None:
        while self.full:
            await self._room.wait()

    async def finalize(self, run_log: RunLog, state: FinalState) -> None:
        """Commit a run's final state after its events; publish its last events.

        Raises :class:`StoreError` when the final state could not be written;
        the events are published all the same, ``end`` carrying
        ``error_details``. Cancelling the wait does not withdraw the final
        state: it stays queued and is committed when the writer gets to it.
        """
        final = _Final(run_log, state, counted=len(state.events))
        self._queue.append(final)
        self._pending += final.counted
        self._wakeup.set()
        await final.done.wait()
        if final.error is not None:
            raise final.error

    async def create(
        self,
        run: Run,
        thread: Thread | None,
        *,
        running_at: float | None = None,
        first: tuple[str, JSON] | None = None,
    ) -> Event | None:
        """Commit a new pending run (after ``thread``, new too, if given).

        With ``running_at`` its running mark is committed with it (a run that
        starts at once): one transaction less before its agent starts. So is
        ``first``, the run's first event (seq 0), by a durable writer: it is
        returned, for the run's log to publish (None: log it as usual).
        Raises :class:`StoreError` when it could not be written (at once,
        :class:`StoreUnavailable`, while the database cannot be reached).
        Cancelling the wait does not withdraw it: callers shield it.
        """
        if self.holding:
            raise StoreUnavailable("the database cannot be reached; the run was not created")
        running = None if running_at is None else (run.run_id, running_at)
        event = None
        if first is not None and self.durable:
            event = Event.make(run.run_id, 0, *first)
        await self._acknowledged(_Row(created=(run, thread), running=running, first=event))
        return event

    async def mark_running(self, run_id: str, at: float) -> None:
        """Commit that the run is running; raises :class:`StoreError` if it could not.

        Cancelling the wait does not withdraw the mark; it is committed before
        the run's final state, which comes behind it in the queue.
        """
        await self._acknowledged(_Row(running=(run_id, at)))

    def save_nowait(
        self,
        checkpoints: list[CheckpointRow] | None = None,
        writes: list[WriteRow] | None = None,
        *,
        sticky: bool = False,
    ) -> _Row:
        """Queue a graph's checkpoints and pending writes behind everything queued so far.

        They commit in the same transaction as the events queued before them,
        or a later one; ``sticky``: in the same one as the events queued just
        before them (a batch is never cut between). ``await op.wait()`` on
        what this returns waits for the commit. Raises :class:`StoreError`
        once the writer has stopped.
        """
        op = _Row(checkpoints=checkpoints or [], writes=writes or [], sticky=sticky)
        self._enqueue(op)
        return op

    async def _acknowledged(self, op: _Row) -> None:
        self._enqueue(op)
        await op.wait()

    def _enqueue(self, op: _Row) -> None:
        if self._stopped.is_set():
            raise StoreError("the commit writer has stopped")
        self._queue.append(op)
        self._wakeup.set()

    # -- the writer task ------------------------------------------------------

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Commit and publish until :meth:`aclose`; then drain the queue and return."""
        task_status.started()
        try:
            while True:
                if not self._queue:
                    if self._closing:
                        return
                    self._wakeup = trio.Event()
                    await self._wakeup.wait()
                    continue
                self._batch = self._take_batch()
                await self._commit(self._batch)
                self._batch = []
        finally:
            self._stopped.set()
            # Runs waiting to start must not wait forever for a writer that is gone.
            # (Finals keep waiting: their cleanups end at the cleanup deadline.)
            for op in self._batch + self._queue:
                if isinstance(op, _Row) and not op.done.is_set():
                    op.error = StoreError("the commit writer has stopped")
                    op.done.set()

    async def aclose(self) -> None:
        """Stop after everything queued so far has been committed."""
        self._closing = True
        self._wakeup.set()
        await self._stopped.wait()

    def _take_batch(self) -> list[_Op]:
        count = 0
        cut = 0
        for cut, op in enumerate(self._queue, 1):
            count += len(op.state.events) if isinstance(op, _Final) else 1
            following = self._queue[cut] if cut < len(self._queue) else None
            if count >= MAX_BATCH and not (isinstance(following, _Row) and following.sticky):
                break
        batch = self._queue[:cut]
        del self._queue[:cut]
        return batch

    async def _commit(self, ops: list[_Op]) -> None:
        batch = Batch()
        finals: list[_Final] = []
        rows: list[_Row] = []
        tried: list[tuple[RunLog, Event]] = []
        publish: dict[RunLog, list[Event]] = defaultdict(list)
        held = 0  # events of runs that lost some: kept for their final state
        for op in ops:
            if isinstance(op, tuple):
                if op[0].run_id in self._lost:
                    # Published now, they would overtake the lost ones: wait with them.
                    self._lost[op[0].run_id].append(op[1])
                    held += 1
                    continue
                tried.append(op)
                batch.events.append(op[1])
                publish[op[0]].append(op[1])
            elif isinstance(op, _Row):
                rows.append(op)
                if op.created is not None:
                    batch.created.append(op.created)
                if op.first is not None:
                    batch.events.append(op.first)
                if op.running is not None:
                    batch.running.append(op.running)
                batch.checkpoints.extend(op.checkpoints)
                batch.writes.extend(op.writes)
            else:
                finals.append(op)
                state = op.state
                lost = self._lost.pop(state.run_id, [])
                if not self.durable:
                    # The published events were kept in memory only; store them now.
                    state.events = op.log.events() + state.events
                state.events = lost + state.events
                batch.finals.append(state)
                publish[op.log].extend(e for e in state.events if e.seq > op.log.published)
        began = time.perf_counter()
        try:
            if any((batch.events, batch.created, batch.running, batch.finals, rows)):
                await self._write(batch)
        except StoreError as exc:
            self.stats.failures += 1
            log.error("commit.failed", extra={"events": len(batch.events), "finals": len(finals)})
            self._fail(tried, rows, finals, exc)
        else:
            self.transactions += 1
            events = len(batch.events) + sum(len(state.events) for state in batch.finals)
            self.stats.committed(events, time.perf_counter() - began)
            for run_log, evs in publish.items():
                run_log.publish(evs)
            if self.fanout is not None:
                self.fanout.publish([e for evs in publish.values() for e in evs])
            for f in finals:
                f.done.set()
            for row in rows:
                row.done.set()
        self._pending -= len(batch.events) + held + sum(f.counted for f in finals)
        if not self.full:
            self._room.set()
            self._room = trio.Event()

    async def _write(self, batch: Batch) -> None:
        """Commit ``batch``; while the database cannot be reached, try again within
        the outage grace (the same batch: what a lost answer had committed already
        is written so that it changes nothing)."""
        delay = OUTAGE_RETRY_FIRST
        while True:
            try:
                await self.store.commit(batch)
            except StoreUnavailable:
                at = trio.current_time()
                if self.outage_since is None:
                    self.outage_since = at
                    log.warning("store.unreachable", extra={"grace": self.outage_grace})
                if at - self.outage_since >= self.outage_grace:
                    raise
                await trio.sleep(min(delay, self.outage_since + self.outage_grace - at))
                delay = min(delay * 2, OUTAGE_RETRY_MAX)
                batch.again = True  # the lost answer may have been a commit
                continue
            if self.outage_since is not None:
                log.warning(
                    "store.reachable",
                    extra={"after": round(trio.current_time() - self.outage_since, 3)},
                )
                self.outage_since = None
            return

    def _fail(
        self,
        tried: list[tuple[RunLog, Event]],
        rows: list[_Row],
        final_ops: list[_Final],
        exc: StoreError,
    ) -> None:
        """The batch did not land: fail its rows, keep its events, still end its runs."""
        for row in rows:
            row.error = StoreError("the run's row could not be written")
            row.error.__cause__ = exc
            row.done.set()
        finals = {op.log: op for op in final_ops}
        ending: dict[RunLog, list[Event]] = defaultdict(list)
        for run_log, ev in tried:
            if run_log in finals:
                ending[run_log].append(ev)  # published below, before its end
                continue
            first_loss = run_log.run_id not in self._lost
            self._lost[run_log.run_id].append(ev)
            if first_loss:
                self.on_lost(run_log.run_id)
        for run_log, final in finals.items():
            # The final state did not land: still end every stream, and say why.
            evs = sorted(ending[run_log] + final.state.events, key=lambda e: e.seq)
            if evs and evs[-1].event == "end":
                data = evs[-1].value()
                data["error_details"] = "the final state could not be persisted"
                evs[-1] = Event.make(evs[-1].run_id, evs[-1].seq, "end", data)
            run_log.publish([e for e in evs if e.seq > run_log.published])
            final.error = StoreError("the final state could not be persisted")
            final.error.__cause__ = exc
            final.done.set()
