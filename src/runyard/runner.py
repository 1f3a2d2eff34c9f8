"""The run task: from a run's turn on its thread to its persisted final state.

Each admitted run gets one task in the supervisor's runs nursery::

    _run_task (under the run's own CancelScope)
    ├── sleeps after_seconds (still pending), then waits its turn on the thread
    ├── commits the running mark (the agent starts only once it is committed;
    │   a run with nothing ahead and no delay had it committed with its row)
    ├── agent.invoke(input, ctx), bounded by timeout_seconds
    └── finally: shielded, deadline-bounded finalize, exactly once

A cancel may land at any await before the ``finally``; the outcome is then
decided from what had happened (see :mod:`runyard.outcome`). The finalize
queues the last events and the final row as one unit in the commit writer
and waits for the commit; if that wait is cut by the cleanup deadline, the
final state stays queued and is still written.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

import trio
import trio_asyncio

from .agents import Agent, AsyncioRunContext, RunContext
from .commit import CommitWriter
from .config import Settings
from .coordinator import Coordinator
from .errors import AgentError, LimitExceeded, StoreError
from .events import EventBus
from .feed import RunFeed
from .model import JSON, CancelReason, Event, Run, RunRequest, RunStatus, dumps, now
from .outcome import (
    STORE_FAILED,
    Outcome,
    apply,
    failed,
    final_state,
    metadata_of,
    settled,
    timed_out,
)
from .runtable import RunHandle, RunTable
from .stats import RunStats
from .store import ThreadState

log = logging.getLogger("runyard.runner")

# Seconds an agent emitting back to back may keep trio's thread. Between two
# passes through the scheduler its events pile up in the writer's queue and
# share one commit and one write to each subscriber; a pass per event made one
# transaction per event (a small commit runs on trio's thread) and took a
# single stream from 40k to 4.5k events/s.
EMIT_YIELD_EVERY = 0.001


class Runner:
    """Starts admitted runs' tasks and sees each to exactly one final state."""

    def __init__(
        self,
        settings: Settings,
        writer: CommitWriter,
        coordinator: Coordinator,
        table: RunTable,
        feed: RunFeed,
        bus: EventBus,
    ) -> None:
        self.settings = settings
        self.writer = writer
        self.coordinator = coordinator
        self.table = table
        self.feed = feed
        self.bus = bus
        self.loop: trio_asyncio.TrioEventLoop | None = None  # set while the supervisor serves
        # What graph runs get (saver, memory store); set by the supervisor when it has graphs.
        self.graph_host: Any = None
        writer.on_lost = self._events_lost
        self.stats = RunStats()

    def admit(
        self,
        nursery: trio.Nursery,
        run: Run,
        request: RunRequest,
        agent: Agent | None,
        *,
        next_seq: int = 0,
        running_at: float | None = None,
        first: Event | None = None,
    ) -> RunHandle:
        """Register a persisted run, queue its ``metadata`` event, start its task.

        ``next_seq`` > 0 means the log has begun already (a run restarted
        after a crash), ``metadata`` included. ``running_at``: the run's
        running mark was committed with its row; ``first``: so was its
        ``metadata`` event (:meth:`metadata`), published here. Nothing here waits.
        """
        if first is not None:
            next_seq = first.seq + 1
        run_log = self.bus.open(run.run_id, next_seq=next_seq)
        handle = RunHandle(run, request, run_log, agent)
        handle.running_at = running_at
        if first is not None:
            run_log.publish([first])
        elif next_seq == 0 or run.attempt > 1:  # a new log, or a new attempt in an old one
            self.writer.append_nowait(run_log, *self.metadata(run))
        self.table.admit(handle)
        self.stats.admitted[agent_label(agent)] += 1
        self.coordinator.join_line(handle)
        nursery.start_soon(self._run_task, handle, name=f"run {run.run_id}")
        self.feed.announce(run)
        return handle

    @staticmethod
    def metadata(run: Run) -> tuple[str, JSON]:
        """A run's first event: ``metadata``, naming the run and its attempt."""
        return "metadata", metadata_of(run)

    def forget(self, handle: RunHandle) -> None:
        """Drop a finished run from memory; the store still has it."""
        if self.table.forget(handle):
            self.bus.forget(handle.run_id)

    async def _run_task(self, handle: RunHandle) -> None:
        if self.loop is not None:
            trio_asyncio.current_loop.set(self.loop)
        agent = handle.agent
        ctx_class = AsyncioRunContext if agent is not None and agent.asyncio else RunContext
        sink = _Sink(self.writer, self.settings, handle)
        host = None
        if agent is not None and agent.graph is not None and self.graph_host is not None:
            host = self.graph_host.for_run(handle.run.thread_id, sink)
        ctx = ctx_class(
            sink,
            run_id=handle.run_id,
            thread_id=handle.run.thread_id,
            metadata=handle.run.metadata,
            config=handle.request.config,
            stream_mode=handle.request.stream_mode,
            attempt=handle.run.attempt,
            owner=handle.run.owner,
            options=handle.request.options,
            host=host,
        )
        outcome: Outcome | None = None
        try:
            with handle.scope:
                outcome = await self._execute(handle, ctx)
        except Exception as exc:  # the agent failed: a safe message out, details to the log
            outcome = None if handle.store_failed else failed(handle.run, exc)
        finally:
            if outcome is None:
                outcome = (
                    STORE_FAILED
                    if handle.store_failed
                    else settled(ctx.has_result, ctx.result, handle.cancel_reason)
                )
            if outcome.cancel_reason is CancelReason.SHUTDOWN and self._resumes(handle):
                self._leave_to_next_start(handle)
            else:
                with trio.CancelScope(shield=True) as cleanup:
                    cleanup.deadline = trio.current_time() + self.settings.cleanup_deadline
                    await self._finalize(handle, outcome, ctx.thread_state)
        if handle.request.on_completion == "delete" and handle.request.thread_id is None:
            await self._delete_thread(handle)
        await trio.sleep(self.settings.retention)
        self.forget(handle)

    async def _delete_thread(self, handle: RunHandle) -> None:
        """A thread-less run asked to leave nothing: its thread goes (it stays in memory)."""
        try:
            await self.writer.store.delete_thread(handle.run.thread_id)
        except StoreError as exc:
            log.warning("run.thread_not_deleted", extra={"run_id": handle.run_id}, exc_info=exc)

    async def _execute(self, handle: RunHandle, ctx: RunContext) -> Outcome | None:
        """Wait, start, invoke. An outcome only for a timeout; None: decide from ``ctx``."""
        request = handle.request
        if request.after_seconds > 0:
            await trio.sleep(request.after_seconds)
        await self.coordinator.wait_turn(handle)
        await self._mark_running(handle)
        if handle.agent is None:
            raise AgentError(f"assistant {handle.run.assistant_id!r} is not registered")
        timeout = request.timeout_seconds
        with trio.move_on_after(math.inf if timeout is None else timeout) as timer:
            output = await handle.agent.invoke(request.input, ctx)
            ctx.set_result(output)
        if timer.cancelled_caught and not ctx.has_result:
            return timed_out(timeout)
        return None

    async def _mark_running(self, handle: RunHandle) -> None:
        ts = handle.running_at
        if ts is None:
            ts = now()
            await self.writer.mark_running(handle.run_id, ts)
        handle.run.status = RunStatus.RUNNING
        handle.run.updated_at = ts
        self.feed.announce(handle.run)

    async def _finalize(
        self, handle: RunHandle, outcome: Outcome, thread_state: ThreadState | None = None
    ) -> None:
        """Persist the terminal state (once), publish the last events, wake waiters."""
        run = handle.run
        ts = now()
        others = [rid for rid in self.coordinator.line(run.thread_id) if rid != run.run_id]
        state = final_state(
            run,
            outcome,
            handle.log,
            at=ts,
            last_values=handle.last_values,
            thread_idle_after=not others,
            thread_state=thread_state if outcome.status is RunStatus.SUCCESS else None,
        )
        try:
            await self.writer.finalize(handle.log, state)
        except StoreError as exc:
            handle.persist_error = "the final state could not be persisted"
            log.error("run.final_write_failed", exc_info=exc, extra={"run_id": run.run_id})
        finally:
            apply(run, outcome, ts)
            self.coordinator.leave_line(handle)
            self.table.release(handle)
            handle.finished.set()
            self.feed.announce(run)
            if state.delete:
                self.forget(handle)
            self.stats.finish(agent_label(handle.agent), str(run.status), ts - run.created_at)
            log.info(
                "run.finished",
                extra={
                    "run_id": run.run_id,
                    "status": str(run.status),
                    "reason": str(run.cancel_reason),
                },
            )

    def _resumes(self, handle: RunHandle) -> bool:
        """Whether the run is a graph run that the next start resumes (opt-in)."""
        if handle.agent is None or handle.agent.graph is None:
            return False
        return bool(
            handle.request.options.get("resume_on_restart", self.settings.resume_graph_runs)
        )

    def _leave_to_next_start(self, handle: RunHandle) -> None:
        """Shutdown caught a resumable graph run: it stays ``running`` in the store, with
        no ``end``, and the next start resumes it from its last checkpoint."""
        self.coordinator.leave_line(handle)
        self.table.release(handle)
        handle.finished.set()
        log.info("run.left_to_resume", extra={"run_id": handle.run_id})

    def _events_lost(self, run_id: str) -> None:
        """Some of the run's events could not be committed: the run fails."""
        handle = self.table.get(run_id)
        if handle is not None and not handle.finished.is_set():
            handle.store_failed = True
            handle.scope.cancel()


def agent_label(agent: Agent | None) -> str:
    """A run's agent as the metrics name it (registered names only: a bounded set)."""
    return "unregistered" if agent is None else agent.name


class _Sink:
    """Where a run's context sends its events: the writer, with back-pressure.

    A graph run encodes its events on the graph loop (:meth:`encode`, the
    limits checked there, where the graph can be told) and posts them to
    trio (:meth:`append_text`); other runs do both at once.
    """

    __slots__ = ("_emitted", "_first_seq", "_handle", "_settings", "_writer", "_yielded_at")

    def __init__(self, writer: CommitWriter, settings: Settings, handle: RunHandle) -> None:
        self._writer = writer
        self._settings = settings
        self._handle = handle
        self._first_seq = handle.log.next_seq  # the run's own events come after this
        self._emitted = 0
        self._yielded_at = -math.inf  # when emit last let other tasks run

    async def emit(self, event: str, data: JSON) -> None:
        """Log an event: a point where a cancel lands, and at most every
        :data:`EMIT_YIELD_EVERY` a pass through trio's scheduler."""
        now = time.monotonic()
        if now - self._yielded_at >= EMIT_YIELD_EVERY:
            self._yielded_at = now
            await trio.lowlevel.checkpoint()
        else:
            await trio.lowlevel.checkpoint_if_cancelled()
        self.append_nowait(event, data)
        if self._writer.full:
            await self._writer.wait_for_room()

    async def wait_for_room(self) -> None:
        await self._writer.wait_for_room()

    @property
    def full(self) -> bool:
        return self._writer.full

    def append_nowait(self, event: str, data: JSON) -> bool:
        """Log an event now, within the limits; True when the writer is full."""
        self.append_text(event, self.encode(event, data))
        return self._writer.full

    def encode(self, event: str, data: JSON) -> str:
        """The event's JSON text; raises :class:`LimitExceeded` past a limit."""
        text = dumps(data)
        limit = self._settings.max_event_bytes
        if len(text) > limit:
            raise LimitExceeded(f"an event of {len(text)} bytes is over the limit of {limit}")
        if self._first_seq + self._emitted >= self._settings.max_events_per_run:
            raise LimitExceeded(
                f"the run emitted more than {self._settings.max_events_per_run} events"
            )
        self._emitted += 1
        return text

    def append_text(self, event: str, text: str) -> None:
        """Log an event encoded by :meth:`encode` (on trio)."""
        self._writer.append_text_nowait(self._handle.log, event, text)
        if event == "values":
            self._handle.last_values = text
