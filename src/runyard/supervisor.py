"""The supervisor: one root nursery owns every run, from creation to final state.

The nursery tree (see docs/architecture.md)::

    Supervisor.serve
    └── trio-asyncio loop
        ├── CommitWriter.serve      shielded; outlives the runs, closed last
        └── runs nursery
            └── _run_task (one per run, each under its own CancelScope)
                ├── waits: after_seconds, then its turn on the thread
                ├── agent.invoke(input, ctx)
                └── finally: shielded, deadline-bounded finalize (exactly once)

A run's terminal status is decided from what happened, in this order: the
result was set (returned, or ``ctx.set_result`` before a cancel landed) →
``success``; the run's events could not be stored → ``error``; the agent
raised → ``error`` with a safe message; the timeout fired → ``timeout``;
cancelled → ``interrupted`` with the reason given to :meth:`RunHandle.cancel`
(``shutdown`` when the whole supervisor was cancelled).
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import logging
import math
from collections.abc import AsyncIterator

import trio
import trio_asyncio

from .agents import Agent, AgentRegistry, AsyncioRunContext, RunContext
from .commit import CommitWriter
from .config import Settings
from .errors import (
    AgentError,
    Conflict,
    LimitExceeded,
    NotFound,
    ShuttingDown,
    StoreError,
    TooManyRequests,
)
from .events import EventBus, LocalEventBus, RunLog, Subscription
from .model import (
    RunRequest,
    JSON,
    CancelReason,
    ErrorInfo,
    Event,
    MultitaskStrategy,
    Run,
    RunStatus,
    Thread,
    ThreadStatus,
    dumps,
    new_id,
    now,
    thread_status_after,
)
from .store import Batch, FinalState, Store

log = logging.getLogger("runyard.supervisor")

# Status changes a watcher (the dashboard's feed) may fall behind before it is dropped.
WATCH_BUFFER = 1024


@dataclasses.dataclass(slots=True)
class _Outcome:
    status: RunStatus
    cancel_reason: CancelReason | None = None
    error: ErrorInfo | None = None
    output: JSON = None


class RunHandle:
    """A live run: its row, its log, its cancel scope, and who waits for it."""

    def __init__(self, run: Run, request: RunRequest, run_log: RunLog, agent: Agent | None) -> None:
        self.run = run
        self.request = request
        self.log = run_log
        self.agent = agent
        # Made before the task starts, so a cancel can never miss it.
        self.scope = trio.CancelScope()
        self.cancel_reason: CancelReason | None = None
        self.store_failed = False
        self.persist_error: str | None = None
        self.last_values: str | None = None  # the agent's last "values" event, as JSON
        self.finished = trio.Event()

    @property
    def run_id(self) -> str:
        return self.run.run_id

    def cancel(self, reason: CancelReason) -> None:
        """Ask the run to stop; the first reason given wins."""
        if self.finished.is_set():
            return
        if self.cancel_reason is None:
            self.cancel_reason = reason
        self.scope.cancel()


class Supervisor:
    """Owns every run. Start it with ``await nursery.start(supervisor.serve)``."""

    def __init__(
        self,
        store: Store,
        agents: AgentRegistry,
        settings: Settings | None = None,
        *,
        bus: EventBus | None = None,
    ) -> None:
        self.store = store
        self.agents = agents
        self.settings = settings or Settings()
        self.bus: EventBus = bus or LocalEventBus(store, keep_all=not self.settings.durable)
        self.writer = CommitWriter(store, durable=self.settings.durable)
        self.writer.on_lost = self._events_lost
        self.accepting = False
        self.draining = False  # shutdown has begun
        self._runs: dict[str, RunHandle] = {}
        self._lines: dict[str, collections.deque[RunHandle]] = collections.defaultdict(
            collections.deque
        )
        self._thread_locks: dict[str, trio.Lock] = {}
        self._live = 0  # runs not finished yet
        self._idle = trio.Event()
        self._idle.set()
        self._stop = trio.Event()
        self._grace_scope: trio.CancelScope | None = None
        self._nursery: trio.Nursery | None = None
        self.writer_scope: trio.CancelScope | None = None
        self._watchers: set[trio.MemorySendChannel[Run]] = set()
        self._active_by_owner: collections.Counter[str] = collections.Counter()
        self._waits_by_owner: collections.Counter[str] = collections.Counter()
        self._subscribers: collections.Counter[str] = collections.Counter()
        self.loop: trio_asyncio.TrioEventLoop | None = None

    # -- lifetime ---------------------------------------------------------------

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Recover what a dead process left, run until :meth:`shutdown`, then drain.

        If this task is cancelled instead, every run is cancelled with reason
        ``shutdown`` and still persists its final state, each within the
        cleanup deadline; the writer outlives them and is closed last.
        """
        async with trio_asyncio.open_loop() as loop, trio.open_nursery() as outer:
            self.loop = loop
            writer_scope = self.writer_scope = trio.CancelScope(shield=True)
            outer.start_soon(self._serve_writer, writer_scope, name="commit writer")
            try:
                async with trio.open_nursery() as runs:
                    self._nursery = runs
                    await self._recover()
                    if self.settings.data_retention:
                        runs.start_soon(self._purge_forever, self.settings.data_retention)
                    self.accepting = True
                    task_status.started()
                    await self._stop.wait()
                    runs.cancel_scope.cancel()  # only retention timers are left
            finally:
                self.accepting = False
                with trio.move_on_after(self.settings.cleanup_deadline, shield=True):
                    await self.writer.aclose()
                writer_scope.cancel()

    async def _serve_writer(self, scope: trio.CancelScope) -> None:
        with scope:
            await self.writer.serve()

    async def shutdown(self, grace: float | None = None) -> None:
        """Stop taking runs, let them finish for ``grace`` s, cancel the rest, drain.

        Calling it again while a drain is under way ends the grace period at
        once; the cleanups still run. Returns when every run has persisted its
        final state (each bounded by the cleanup deadline).
        """
        self.accepting = False
        self.draining = True
        if self._grace_scope is not None:
            self._grace_scope.cancel()
            await self.wait_idle()
            return
        began = trio.current_time()
        with trio.move_on_after(self.settings.grace if grace is None else grace) as self._grace_scope:
            await self.wait_idle()
        log.info(
            "shutdown.grace_over",
            extra={"seconds": round(trio.current_time() - began, 3), "live_runs": self._live},
        )
        cancelled = 0
        for handle in list(self._runs.values()):
            if not handle.finished.is_set():
                handle.cancel(CancelReason.SHUTDOWN)
                cancelled += 1
        step = trio.current_time()
        with trio.move_on_after(self.settings.cleanup_deadline + 1.0):
            await self.wait_idle()
        log.info(
            "shutdown.cleanups_done",
            extra={
                "seconds": round(trio.current_time() - step, 3),
                "cancelled": cancelled,
                "unfinished": self._live,
            },
        )
        for send in self._watchers:
            send.close()  # the dashboard feeds end with the runs
        self._watchers.clear()
        self._stop.set()

    def hurry(self) -> None:
        """End the grace period of a shutdown under way; the cleanups still run."""
        if self._grace_scope is not None:
            self._grace_scope.cancel()

    async def wait_idle(self) -> None:
        """Wait until no run is pending or running."""
        await self._idle.wait()

    @property
    def live_runs(self) -> int:
        return self._live

    @contextlib.asynccontextmanager
    async def _thread_lock(self, thread_id: str) -> AsyncIterator[None]:
        """Serialise decisions about one thread; the lock lives only while in use."""
        lock = self._thread_locks.setdefault(thread_id, trio.Lock())
        try:
            async with lock:
                yield
        finally:
            if not lock.locked() and lock.statistics().tasks_waiting == 0:
                self._thread_locks.pop(thread_id, None)

    # -- threads ----------------------------------------------------------------

    async def create_thread(
        self,
        *,
        thread_id: str | None = None,
        metadata: dict[str, JSON] | None = None,
        if_exists: str = "raise",
        owner: str = "",
    ) -> Thread:
        tid = thread_id or new_id()
        async with self._thread_lock(tid):
            existing = await self.store.get_thread(tid)
            if existing is not None:
                if existing.owner != owner:
                    raise Conflict(f"thread {tid} already exists")
                if if_exists == "do_nothing":
                    return existing
                raise Conflict(f"thread {tid} already exists")
            ts = now()
            thread = Thread(tid, ts, ts, metadata or {}, owner=owner)
            await self.store.put_thread(thread)
            return thread

    async def get_thread(self, thread_id: str, *, owner: str = "") -> Thread:
        thread = await self.store.get_thread(thread_id)
        if thread is None or thread.owner != owner:
            raise NotFound(f"thread {thread_id} not found")
        return thread

    async def delete_thread(self, thread_id: str, *, owner: str = "") -> None:
        """Cancel the thread's runs, wait for their final states, delete it all."""
        await self.get_thread(thread_id, owner=owner)
        async with self._thread_lock(thread_id):
            line = list(self._lines.get(thread_id, ()))
            for handle in line:
                handle.cancel(CancelReason.USER)
            for handle in line:
                await handle.finished.wait()
            await self.store.delete_thread(thread_id)
            for handle in line:
                self._forget(handle)

    async def search_threads(
        self,
        *,
        owner: str = "",
        metadata: dict[str, JSON] | None = None,
        status: str | None = None,
        limit: int = 10,
        offset: int = 0,
    ) -> list[Thread]:
        """The owner's threads, newest first, whose metadata holds every pair given."""
        return await self.store.search_threads(
            owner=owner, metadata=metadata or {}, status=status, limit=limit, offset=offset
        )

    # -- runs -------------------------------------------------------------------

    async def create_run(self, request: RunRequest) -> RunHandle:
        """Persist a new ``pending`` run and start its task; return its handle.

        Raises :class:`ShuttingDown`, :class:`NotFound` (agent or thread) or
        :class:`Conflict` (busy thread under ``reject``).
        """
        if not self.accepting:
            raise ShuttingDown("the server is shutting down")
        limits = self.settings
        if self._live >= limits.max_active_runs:
            raise TooManyRequests(f"the server has {limits.max_active_runs} active runs; retry later")
        if self._active_by_owner[request.owner] >= limits.max_active_runs_per_owner:
            raise TooManyRequests(
                f"you have {limits.max_active_runs_per_owner} active runs; retry when some end"
            )
        agent = self.agents.get(request.assistant_id)
        if agent is None:
            raise NotFound(f"assistant {request.assistant_id!r} not found")
        new_thread: Thread | None = None
        if request.thread_id is None:
            # A fresh id cannot exist yet: the thread is written with the run.
            ts = now()
            thread = new_thread = Thread(new_id(), ts, ts, {}, owner=request.owner)
        else:
            thread = await self._thread_for(request)
        tid = thread.thread_id
        async with self._thread_lock(tid):
            if not self.accepting:
                raise ShuttingDown("the server is shutting down")
            line = self._lines[tid]
            strategy = request.multitask_strategy
            if line and strategy is MultitaskStrategy.REJECT:
                raise Conflict(f"thread {tid} has a run in progress")
            ts = now()
            run = Run(
                run_id=new_id(),
                thread_id=tid,
                assistant_id=agent.name,
                status=RunStatus.PENDING,
                created_at=ts,
                updated_at=ts,
                metadata=request.metadata,
                kwargs=_kwargs(request),
                multitask_strategy=strategy,
                owner=request.owner,
            )
            # From here on the run exists: no cancel may leave it half made.
            with trio.CancelScope(shield=True):
                await self.writer.create(run, new_thread)
                handle = self._admit(run, request, agent)
            if strategy in (MultitaskStrategy.INTERRUPT, MultitaskStrategy.ROLLBACK):
                reason = (
                    CancelReason.INTERRUPT
                    if strategy is MultitaskStrategy.INTERRUPT
                    else CancelReason.ROLLBACK
                )
                for earlier in line:
                    if earlier is not handle:
                        earlier.cancel(reason)
            return handle

    async def _thread_for(self, request: RunRequest) -> Thread:
        assert request.thread_id is not None
        thread = await self.store.get_thread(request.thread_id)
        if thread is not None and thread.owner == request.owner:
            return thread
        if thread is None and request.if_not_exists == "create":
            return await self.create_thread(
                thread_id=request.thread_id, if_exists="do_nothing", owner=request.owner
            )
        raise NotFound(f"thread {request.thread_id} not found")

    def _admit(
        self, run: Run, request: RunRequest, agent: Agent | None, *, next_seq: int = 0
    ) -> RunHandle:
        """Register a persisted run, log its ``metadata`` event, start its task.

        ``next_seq`` > 0 means the log has begun already (a run restarted
        after a crash), ``metadata`` included.
        """
        assert self._nursery is not None
        run_log = self.bus.open(run.run_id, next_seq=next_seq)
        handle = RunHandle(run, request, run_log, agent)
        if next_seq == 0:
            self.writer.append_nowait(
                run_log, "metadata", {"run_id": run.run_id, "attempt": run.attempt}
            )
        self._runs[run.run_id] = handle
        self._lines[run.thread_id].append(handle)
        self._live += 1
        self._active_by_owner[run.owner] += 1
        self._idle = trio.Event() if self._idle.is_set() else self._idle
        self._nursery.start_soon(self._run_task, handle, name=f"run {run.run_id}")
        self._announce(run)
        return handle

    def watch(self) -> trio.MemoryReceiveChannel[Run]:
        """A channel of every run as its status changes (created, running, final).

        A watcher that falls behind is dropped (its channel closes); it should
        take a fresh list and watch again.
        """
        send, receive = trio.open_memory_channel[Run](WATCH_BUFFER)
        self._watchers.add(send)
        return receive

    def _announce(self, run: Run) -> None:
        snapshot = dataclasses.replace(run)
        for send in list(self._watchers):
            try:
                send.send_nowait(snapshot)
            except (trio.WouldBlock, trio.BrokenResourceError):
                self._watchers.discard(send)
                send.close()

    def get_handle(self, run_id: str) -> RunHandle | None:
        return self._runs.get(run_id)

    async def get_run(self, run_id: str, *, thread_id: str | None = None, owner: str = "") -> Run:
        handle = self._runs.get(run_id)
        run = handle.run if handle is not None else await self.store.get_run(run_id)
        if run is None or run.owner != owner or thread_id not in (None, run.thread_id):
            raise NotFound(f"run {run_id} not found")
        return run

    async def list_runs(
        self,
        thread_id: str | None,
        *,
        status: str | None = None,
        limit: int = 10,
        offset: int = 0,
        owner: str = "",
    ) -> list[Run]:
        """Runs newest first, of one thread or (``thread_id`` None) of every thread."""
        if thread_id is not None:
            await self.get_thread(thread_id, owner=owner)
        runs = await self.store.list_runs(
            thread_id, status=status, limit=limit, offset=offset, owner=owner
        )
        # Live runs are fresher in memory (the store lags a status change by a commit).
        return [self._runs[r.run_id].run if r.run_id in self._runs else r for r in runs]

    async def cancel_run(
        self,
        run_id: str,
        *,
        thread_id: str | None = None,
        reason: CancelReason = CancelReason.USER,
        wait: bool = False,
        owner: str = "",
    ) -> Run:
        """Cancel a pending or running run (a finished one is left as it is)."""
        run = await self.get_run(run_id, thread_id=thread_id, owner=owner)
        handle = self._runs.get(run_id)
        if handle is None:
            return run
        handle.cancel(reason)
        if wait:
            await handle.finished.wait()
        return handle.run

    def cancel_nowait(self, run_id: str, reason: CancelReason) -> None:
        """Ask a live run to stop without waiting (a client that left, say)."""
        handle = self._runs.get(run_id)
        if handle is not None:
            handle.cancel(reason)

    async def wait_run(
        self,
        run_id: str,
        *,
        thread_id: str | None = None,
        owner: str = "",
        cancel_on_exit: CancelReason | None = None,
    ) -> Run:
        """Wait (without polling) until the run is terminal; return its final row.

        With ``cancel_on_exit``, a waiter that leaves early (it is cancelled:
        its client disconnected) cancels the run with that reason. That cancel
        does not block; the run persists its own final state.
        """
        run = await self.get_run(run_id, thread_id=thread_id, owner=owner)
        handle = self._runs.get(run_id)
        if handle is None:
            return run
        if self._waits_by_owner[owner] >= self.settings.max_waits_per_owner:
            if cancel_on_exit is not None:
                handle.cancel(cancel_on_exit)  # nobody will wait for it
            raise TooManyRequests("too many open waits; retry later")
        self._waits_by_owner[owner] += 1
        try:
            await handle.finished.wait()
        finally:
            self._waits_by_owner[owner] -= 1
            if cancel_on_exit is not None and not handle.finished.is_set():
                handle.cancel(cancel_on_exit)
        return handle.run

    async def delete_run(
        self, run_id: str, *, thread_id: str | None = None, owner: str = ""
    ) -> None:
        run = await self.get_run(run_id, thread_id=thread_id, owner=owner)
        if not run.status.terminal:
            raise Conflict(f"run {run_id} is {run.status}; cancel it first")
        handle = self._runs.get(run_id)
        if handle is not None and not handle.finished.is_set():
            raise Conflict(f"run {run_id} is still finishing")
        await self.store.delete_run(run_id)
        if handle is not None:
            self._forget(handle)

    async def last_seq(self, run_id: str) -> int:
        """The id of the run's newest event a client could have seen (-1: none)."""
        run_log = self.bus.get(run_id)
        if run_log is not None:
            return run_log.published
        return await self.store.last_seq(run_id)

    def subscribe(self, run_id: str, after_seq: int = -1, *, limited: bool = False) -> Subscription:
        """Every event of the run after ``after_seq``; ``limited`` counts it
        against the subscribers-per-run limit (a client's stream)."""
        if limited:
            if self._subscribers[run_id] >= self.settings.max_subscribers_per_run:
                raise TooManyRequests("this run has too many open streams; retry later")
            self._subscribers[run_id] += 1
        subscription = self.bus.subscribe(run_id, after_seq)
        if limited:
            subscription.on_close = lambda: self._release_subscriber(run_id)
        return subscription

    def _release_subscriber(self, run_id: str) -> None:
        self._subscribers[run_id] -= 1
        if self._subscribers[run_id] <= 0:
            del self._subscribers[run_id]

    # -- the run task -------------------------------------------------------------

    async def _run_task(self, handle: RunHandle) -> None:
        if self.loop is not None:
            trio_asyncio.current_loop.set(self.loop)
        request = handle.request
        ctx_class = AsyncioRunContext if handle.agent and handle.agent.asyncio else RunContext
        ctx = ctx_class(
            _Sink(self, handle),
            run_id=handle.run_id,
            thread_id=handle.run.thread_id,
            metadata=handle.run.metadata,
            config=request.config,
            stream_mode=request.stream_mode,
            attempt=handle.run.attempt,
        )
        outcome: _Outcome | None = None
        try:
            with handle.scope:
                if request.after_seconds > 0:
                    await trio.sleep(request.after_seconds)
                await self._wait_turn(handle)
                await self._mark_running(handle)
                if handle.agent is None:
                    raise AgentError(f"assistant {handle.run.assistant_id!r} is not registered")
                timeout = request.timeout_seconds
                with trio.move_on_after(math.inf if timeout is None else timeout) as timer:
                    output = await handle.agent.invoke(request.input, ctx)
                    ctx.set_result(output)
                if timer.cancelled_caught and not ctx.has_result:
                    outcome = _Outcome(
                        RunStatus.TIMEOUT,
                        CancelReason.TIMEOUT,
                        ErrorInfo("TimeoutError", f"the run exceeded its timeout of {timeout} s"),
                    )
        except Exception as exc:  # the agent failed: a safe message out, details to the log
            outcome = None if handle.store_failed else self._failure(handle, exc)
        finally:
            if outcome is None:
                outcome = self._settle(handle, ctx)
            with trio.CancelScope(shield=True) as cleanup:
                cleanup.deadline = trio.current_time() + self.settings.cleanup_deadline
                await self._finalize(handle, outcome)
        await trio.sleep(self.settings.retention)
        self._forget(handle)

    def _settle(self, handle: RunHandle, ctx: RunContext) -> _Outcome:
        """The outcome of a run that did not fail and did not time out."""
        if handle.store_failed:
            return _Outcome(
                RunStatus.ERROR,
                error=ErrorInfo("StoreError", "the run's events could not be stored"),
            )
        if ctx.has_result:
            return _Outcome(RunStatus.SUCCESS, output=ctx.result)
        reason = handle.cancel_reason or CancelReason.SHUTDOWN
        return _Outcome(RunStatus.INTERRUPTED, reason)

    def _failure(self, handle: RunHandle, exc: Exception) -> _Outcome:
        if isinstance(exc, AgentError):
            info = ErrorInfo("AgentError", exc.message)
        elif isinstance(exc, LimitExceeded):
            info = ErrorInfo("LimitExceeded", str(exc))
        elif isinstance(exc, StoreError):
            info = ErrorInfo("StoreError", "the run's state could not be stored")
        else:
            info = ErrorInfo(type(exc).__name__, "the agent failed; details are in the server log")
        log.error(
            "run.failed",
            exc_info=exc,
            extra={"run_id": handle.run_id, "assistant_id": handle.run.assistant_id},
        )
        return _Outcome(RunStatus.ERROR, error=info)

    async def _wait_turn(self, handle: RunHandle) -> None:
        line = self._lines[handle.run.thread_id]
        while line[0] is not handle:
            await line[0].finished.wait()

    async def _mark_running(self, handle: RunHandle) -> None:
        ts = now()
        await self.writer.mark_running(handle.run_id, ts)
        handle.run.status = RunStatus.RUNNING
        handle.run.updated_at = ts
        self._announce(handle.run)

    async def _finalize(self, handle: RunHandle, outcome: _Outcome) -> None:
        """Persist the terminal state (once), publish the last events, wake waiters."""
        run = handle.run
        run_log = handle.log
        delete = outcome.cancel_reason is CancelReason.ROLLBACK
        events: list[Event] = []
        if outcome.status is RunStatus.SUCCESS and handle.last_values != dumps(outcome.output):
            # The output as a last "values" event, unless the agent just logged exactly that.
            events.append(Event.make(run.run_id, run_log.take_seq(), "values", outcome.output))
        if outcome.error is not None:
            events.append(
                Event.make(run.run_id, run_log.take_seq(), "error", outcome.error.to_json())
            )
        end = {"run_id": run.run_id, "status": str(outcome.status)}
        events.append(Event.make(run.run_id, run_log.take_seq(), "end", end))
        line = self._lines[run.thread_id]
        others = any(h is not handle for h in line)
        ts = now()
        state = FinalState(
            run_id=run.run_id,
            thread_id=run.thread_id,
            status=outcome.status,
            cancel_reason=outcome.cancel_reason,
            error=outcome.error,
            output=outcome.output,
            updated_at=ts,
            events=events,
            thread_status=None if others else thread_status_after(outcome.status),
            delete=delete,
        )
        try:
            await self.writer.finalize(run_log, state)
        except StoreError as exc:
            handle.persist_error = "the final state could not be persisted"
            log.error("run.final_write_failed", exc_info=exc, extra={"run_id": run.run_id})
        finally:
            run.status = outcome.status
            run.cancel_reason = outcome.cancel_reason
            run.error = outcome.error
            run.output = outcome.output
            run.updated_at = ts
            with contextlib.suppress(ValueError):
                line.remove(handle)
            if not line:
                self._lines.pop(run.thread_id, None)
            self._live -= 1
            self._active_by_owner[run.owner] -= 1
            if self._live == 0:
                self._idle.set()
            handle.finished.set()
            self._announce(run)
            if delete:
                self._forget(handle)
            log.info(
                "run.finished",
                extra={
                    "run_id": run.run_id,
                    "status": str(run.status),
                    "reason": str(run.cancel_reason),
                },
            )

    def _forget(self, handle: RunHandle) -> None:
        if self._runs.get(handle.run_id) is handle:
            del self._runs[handle.run_id]
            self.bus.forget(handle.run_id)

    def _events_lost(self, run_id: str) -> None:
        handle = self._runs.get(run_id)
        if handle is not None and not handle.finished.is_set():
            handle.store_failed = True
            handle.scope.cancel()

    async def _purge_forever(self, keep: float) -> None:
        while True:
            deleted = await self.store.purge(now() - keep)
            if deleted:
                log.info("store.purged", extra={"runs": deleted})
            await trio.sleep(self.settings.purge_interval)

    # -- recovery -------------------------------------------------------------------

    async def _recover(self) -> None:
        """Settle what a dead process left: finish running runs, restart pending ones."""
        for run in await self.store.unfinished_runs():
            last = await self.store.last_seq(run.run_id)
            if run.status is RunStatus.RUNNING:
                await self._close_orphan(run, last)
                continue
            request = _request_from(run)
            request.after_seconds = max(0.0, run.created_at + request.after_seconds - now())
            self._admit(run, request, self.agents.get(run.assistant_id), next_seq=last + 1)
            log.info("run.restarted", extra={"run_id": run.run_id})

    async def _close_orphan(self, run: Run, last_seq: int) -> None:
        ts = now()
        events: list[Event] = []
        seq = last_seq + 1
        if last_seq < 0:
            events.append(
                Event.make(
                    run.run_id, seq, "metadata", {"run_id": run.run_id, "attempt": run.attempt}
                )
            )
            seq += 1
        end = {"run_id": run.run_id, "status": str(RunStatus.INTERRUPTED)}
        events.append(Event.make(run.run_id, seq, "end", end))
        state = FinalState(
            run_id=run.run_id,
            thread_id=run.thread_id,
            status=RunStatus.INTERRUPTED,
            cancel_reason=CancelReason.RESTART,
            error=None,
            output=None,
            updated_at=ts,
            events=events,
            thread_status=ThreadStatus.INTERRUPTED,
        )
        await self.store.commit(Batch(finals=[state]))
        log.info("run.recovered", extra={"run_id": run.run_id, "status": "interrupted"})


class _Sink:
    """Where a run's context sends its events: the writer, with back-pressure."""

    __slots__ = ("_handle", "_limits", "_writer")

    def __init__(self, supervisor: Supervisor, handle: RunHandle) -> None:
        self._writer = supervisor.writer
        self._limits = supervisor.settings
        self._handle = handle

    async def emit(self, event: str, data: JSON) -> None:
        await trio.lowlevel.checkpoint()
        text = dumps(data)
        if len(text) > self._limits.max_event_bytes:
            raise LimitExceeded(
                f"an event of {len(text)} bytes is over the limit of {self._limits.max_event_bytes}"
            )
        if self._handle.log.next_seq >= self._limits.max_events_per_run:
            raise LimitExceeded(f"the run emitted more than {self._limits.max_events_per_run} events")
        self._writer.append_text_nowait(self._handle.log, event, text)
        if event == "values":
            self._handle.last_values = text
        if self._writer.full:
            await self._writer.wait_for_room()


def _kwargs(request: RunRequest) -> dict[str, JSON]:
    return {
        "input": request.input,
        "config": request.config,
        "stream_mode": request.stream_mode,
        "after_seconds": request.after_seconds,
        "timeout_seconds": request.timeout_seconds,
    }


def _request_from(run: Run) -> RunRequest:
    kw = run.kwargs
    return RunRequest(
        assistant_id=run.assistant_id,
        input=kw.get("input"),
        thread_id=run.thread_id,
        metadata=run.metadata,
        config=kw.get("config") or {},
        stream_mode=kw.get("stream_mode") or ["values"],
        multitask_strategy=run.multitask_strategy,
        after_seconds=float(kw.get("after_seconds") or 0.0),
        timeout_seconds=kw.get("timeout_seconds"),
        owner=run.owner,
    )
