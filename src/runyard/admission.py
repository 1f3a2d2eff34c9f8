"""Admitting a new run: its assistant, its thread, the multitask strategy, its row.

The order is the story: refuse early what cannot be served (shutting down,
over the limits, an unknown assistant or thread), then under the thread's
lock apply the multitask strategy (``reject`` answers 409 while a run is
ahead), write the ``pending`` row (with a new thread, for a thread-less run)
through the commit writer, and start the run's task. Once the row is
written the run is fully registered: that part is shielded, so a cancel of
the request cannot leave it half made. ``interrupt`` and ``rollback`` then
cancel the runs ahead, which the new run waits for (see the coordinator).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext

import trio

from .agents import AgentRegistry
from .assistants import Assistants
from .commit import CommitWriter
from .coordinator import Coordinator
from .errors import Conflict, NotFound, ShuttingDown
from .model import CancelReason, MultitaskStrategy, Run, RunRequest, RunStatus, Thread, new_id, now
from .runner import Runner
from .runtable import RunHandle, RunTable
from .threads import Threads

# What a new run on a busy thread does to the runs ahead of it.
_TAKEOVER = {
    MultitaskStrategy.INTERRUPT: CancelReason.INTERRUPT,
    MultitaskStrategy.ROLLBACK: CancelReason.ROLLBACK,
}


class Admission:
    """Turns a validated :class:`RunRequest` into a running :class:`RunHandle`."""

    def __init__(
        self,
        agents: AgentRegistry,
        assistants: Assistants,
        threads: Threads,
        coordinator: Coordinator,
        table: RunTable,
        writer: CommitWriter,
        runner: Runner,
    ) -> None:
        self._agents = agents
        self._assistants = assistants
        self._threads = threads
        self._coordinator = coordinator
        self._table = table
        self._writer = writer
        self._runner = runner

    async def admit(
        self, request: RunRequest, nursery: trio.Nursery, accepting: Callable[[], bool]
    ) -> RunHandle:
        """Raises :class:`ShuttingDown`, :class:`TooManyRequests`, :class:`NotFound`
        (assistant or thread) or :class:`Conflict` (a busy thread under ``reject``)."""
        if not accepting():
            raise ShuttingDown("the server is shutting down")
        self._table.check_room(request.owner)
        resolved = await self._assistants.resolve(request.assistant_id, request.owner)
        agent = self._agents.get(resolved.graph_id)
        if agent is None:
            raise NotFound(f"assistant {request.assistant_id!r} not found")
        request.config = resolved.configure(request.config)
        new_thread: Thread | None = None
        if request.thread_id is None:
            # A fresh id cannot exist yet: the thread is written with the run.
            ts = now()
            new_thread = Thread(new_id(), ts, ts, {}, owner=request.owner)
            tid = new_thread.thread_id
        else:
            tid = await self._threads.for_run(request)
        # Nothing can be ahead on a thread written with the run: no lock, no look.
        locked = self._coordinator.lock_thread(tid) if new_thread is None else nullcontext()
        async with locked:
            if not accepting():
                raise ShuttingDown("the server is shutting down")
            ahead = [] if new_thread is not None else await self._coordinator.unfinished(tid)
            strategy = request.multitask_strategy
            if ahead and strategy is MultitaskStrategy.REJECT:
                raise Conflict(f"thread {tid} has a run in progress")
            ts = now()
            run = Run(
                run_id=new_id(),
                thread_id=tid,
                assistant_id=resolved.assistant_id,
                status=RunStatus.PENDING,
                created_at=ts,
                updated_at=ts,
                metadata=request.metadata,
                kwargs={**request.kwargs(), "graph_id": agent.name},
                multitask_strategy=strategy,
                owner=request.owner,
            )
            # Nothing ahead and no delay: the run starts at once, so its running
            # mark is committed with its row.
            running_at = ts if not ahead and request.after_seconds <= 0 else None
            with trio.CancelScope(shield=True):
                first = await self._writer.create(
                    run, new_thread, running_at=running_at, first=self._runner.metadata(run)
                )
                handle = self._runner.admit(
                    nursery, run, request, agent, running_at=running_at, first=first
                )
            reason = _TAKEOVER.get(strategy)
            if reason is not None:
                for earlier in ahead:
                    self._coordinator.cancel(earlier, reason)
            return handle
