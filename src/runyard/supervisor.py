"""The supervisor: one root nursery owns every run, from creation to final state.

This is the engine's front door (the HTTP layer and tests use nothing else);
the work is done by parts with one job each:

- :class:`~runyard.admission.Admission`: a new run's assistant, thread, strategy, row;
- :class:`~runyard.runtable.RunTable`: live runs by id, admission counters;
- :class:`~runyard.coordinator.Coordinator`: the per-thread line, thread
  locks, cancel delivery, which runs a dead process left (across replicas on
  PostgreSQL: :class:`~runyard.cluster_coordinator.ClusterCoordinator`);
- :class:`~runyard.runner.Runner`: each run's task, to its final state;
- :class:`~runyard.commit.CommitWriter`: every write, group-committed;
- :class:`~runyard.events.EventBus`: events to subscribers;
- :class:`~runyard.feed.RunFeed`: status changes to the dashboard;
- :class:`~runyard.threads.Threads`: thread operations (``supervisor.threads``);
- :class:`~runyard.assistants.Assistants`: assistants (``supervisor.assistants``);
- :class:`~runyard.thread_state.ThreadStates`: a graph thread's state and history
  (``supervisor.states``); the memory store's items (``supervisor.items``).

The nursery tree (see docs/architecture.md)::

    Supervisor.serve
    └── trio-asyncio loop (plain asyncio agents)
        ├── ClusterCoordinator.serve  a replica's lease; shielded, joins first, leaves last
        ├── FanOut.serve            a replica's Redis fan-out (--bus)
        ├── CommitWriter.serve      shielded; outlives the runs, closed last
        ├── GraphLoop.serve         graphs' asyncio loop, in a thread; stopped after the writer
        └── runs nursery
            ├── recovery, then purge_forever (expired items; old runs with data_retention)
            ├── CronScheduler.serve, Webhooks.serve (crons; the webhook outbox)
            ├── ClusterCoordinator.take_runs (a replica's claim loop)
            └── run task (one a run) each under its own CancelScope
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import trio
import trio_asyncio

from .admission import Admission
from .agents import AgentRegistry
from .assistants import Assistants
from .commit import CommitWriter
from .config import Settings
from .coordinator import Coordinator, LocalCoordinator
from .cpu_pin import CpuPin
from .cron_scheduler import CronScheduler
from .crons import Crons
from .errors import Conflict, NotFound
from .events import EventBus, LocalEventBus, Subscription
from .fanout import FanOut
from .feed import RunFeed
from .graph_loop import GraphLoop
from .model import (
    CancelReason,
    Run,
    RunRequest,
)
from .recovery import recover, start_claimed
from .retention import purge_forever
from .runner import Runner
from .runtable import RunHandle, RunTable
from .store import Store
from .store.items import ItemStore
from .thread_state import ThreadStates
from .threads import Threads
from .webhooks import Webhooks

if TYPE_CHECKING:
    from .cluster import Claim
    from .cluster_coordinator import ClusterCoordinator

log = logging.getLogger("runyard.supervisor")

__all__ = ["RunHandle", "Supervisor"]


class Supervisor:
    """Owns every run. Start it with ``await nursery.start(supervisor.serve)``."""

    def __init__(
        self,
        store: Store,
        agents: AgentRegistry,
        settings: Settings | None = None,
        *,
        bus: EventBus | None = None,
        fanout: FanOut | None = None,
    ) -> None:
        self.store = store
        self.agents = agents
        self.settings = settings = settings or Settings()
        self.writer = CommitWriter(
            store, durable=settings.durable, outage_grace=settings.store_outage_grace
        )
        self.table = RunTable(settings)
        self.coordinator: Coordinator
        self.cluster: ClusterCoordinator | None = None
        self.fanout: FanOut | None = None  # a replica's live events to the others (Redis)
        if getattr(store, "cluster", False):  # a replica of several (runyard[postgres])
            from .cluster_coordinator import ClusterCoordinator
            from .cluster_events import ClusterEventBus
            from .store.postgres import PostgresStore

            assert isinstance(store, PostgresStore)
            self.coordinator = self.cluster = ClusterCoordinator(self.table, store, settings)
            ended = self.cluster.replica.ended.next_ring
            bus = bus or ClusterEventBus(store, ended, fanout, keep_all=not settings.durable)
            self.writer.fanout = self.fanout = fanout
        else:
            self.coordinator = LocalCoordinator(self.table, store)
        self.bus: EventBus = bus or LocalEventBus(store, keep_all=not settings.durable)
        self.feed = RunFeed()
        self.runner = Runner(
            settings, self.writer, self.coordinator, self.table, self.feed, self.bus
        )
        self.threads = Threads(store, self.coordinator, self.table, self.runner)
        self.assistants = Assistants(store, agents)
        self.admission = Admission(
            agents, self.assistants, self.threads, self.coordinator, self.table, self.writer,
            self.runner,
        )  # fmt: skip
        self.items: ItemStore = store  # the memory store's items, for the store API
        self.cron_scheduler = CronScheduler(
            store, self.create_run, lambda: self.accepting, interval=settings.cron_check_interval
        )
        self.webhooks = Webhooks(store, settings, self.feed)
        self.crons = Crons(
            store, self.assistants, self.threads,
            wake=self.cron_scheduler.wake, check_webhook=self.webhooks.policy.check_url,
        )  # fmt: skip
        self.graph_loop: GraphLoop | None = None
        if any(agent.graph is not None for agent in agents.all()):
            from .graph_run import GraphHost  # LangGraph is an optional extra
            from .memory import RunyardMemory

            graph_loop = self.graph_loop = GraphLoop(CpuPin() if settings.pin_cpu else None)

            def memory_for(owner: str) -> RunyardMemory:
                return RunyardMemory(store, graph_loop, owner)

            self.runner.graph_host = GraphHost(store, self.writer, graph_loop, memory_for)
        self.states = ThreadStates(store, agents, self.runner.graph_host)
        self.accepting = False
        self.draining = False  # shutdown has begun
        self._stop = trio.Event()
        self._grace_scope: trio.CancelScope | None = None
        self._nursery: trio.Nursery | None = None
        self.writer_scope: trio.CancelScope | None = None
        self.cluster_scope: trio.CancelScope | None = None  # a replica's lease

    # -- lifetime ---------------------------------------------------------------

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Recover what a dead process left, run until :meth:`shutdown`, then drain.

        If this task is cancelled instead, every run is cancelled with reason
        ``shutdown`` and still persists its final state, each within the
        cleanup deadline; the writer outlives them and is closed last.
        """
        async with trio_asyncio.open_loop() as loop, trio.open_nursery() as outer:
            self.runner.loop = loop
            # A replica joins first (every write is fenced by its lease) and leaves last.
            cluster_scope = self.cluster_scope = trio.CancelScope(shield=True)
            if self.cluster is not None:
                await outer.start(_within, cluster_scope, self.cluster.serve, name="replica")
            fanout_scope = trio.CancelScope()
            if self.fanout is not None:
                await outer.start(_within, fanout_scope, self.fanout.serve, name="fan-out")
            writer_scope = self.writer_scope = trio.CancelScope(shield=True)
            outer.start_soon(_within, writer_scope, self.writer.serve, name="commit writer")
            graphs_scope = trio.CancelScope(shield=True)
            if self.graph_loop is not None:
                await outer.start(_within, graphs_scope, self.graph_loop.serve, name="graph loop")
            try:
                async with trio.open_nursery() as runs:
                    self._nursery = runs
                    await recover(
                        self.coordinator, self.store, self.writer, self.bus, self.runner,
                        self.agents, runs, resume_graph_runs=self.settings.resume_graph_runs,
                    )  # fmt: skip
                    keep, every = self.settings.data_retention, self.settings.purge_interval
                    runs.start_soon(purge_forever, self.store, keep, every)
                    runs.start_soon(self.bus.keep_alive, self.settings.heartbeat, name="heartbeats")
                    runs.start_soon(self.cron_scheduler.serve, name="cron scheduler")
                    runs.start_soon(self.webhooks.serve, name="webhook sender")
                    if self.cluster is not None:
                        runs.start_soon(
                            self.cluster.take_runs, self._start_claimed, lambda: self.accepting,
                            name="claims",
                        )  # fmt: skip
                    self.accepting = True
                    task_status.started()
                    await self._stop.wait()
                    runs.cancel_scope.cancel()  # only timers are left: retention, crons, webhooks
            finally:
                self.accepting = False
                with trio.move_on_after(self.settings.cleanup_deadline, shield=True):
                    await self.writer.aclose()
                writer_scope.cancel()
                graphs_scope.cancel()
                fanout_scope.cancel()
                cluster_scope.cancel()

    async def _start_claimed(self, claim: Claim) -> None:
        assert self._nursery is not None
        start_claimed(claim, self.runner, self.agents, self._nursery)

    async def shutdown(self, grace: float | None = None) -> None:
        """Stop taking runs, let them finish for ``grace`` s, cancel the rest, drain.

        ``grace`` defaults to the setting. Calling it again while a drain is
        under way ends the grace period at once; the cleanups still run.
        Returns when every run has persisted its final state (each bounded by
        the cleanup deadline).
        """
        self.accepting = False
        self.draining = True
        if self._grace_scope is not None:
            self._grace_scope.cancel()
            await self.wait_idle()
            return
        began = trio.current_time()
        with trio.move_on_after(self.settings.grace if grace is None else grace) as scope:
            self._grace_scope = scope
            await self.wait_idle()
        log.info(
            "shutdown.grace_over",
            extra={"seconds": round(trio.current_time() - began, 3), "live_runs": self.live_runs},
        )
        cancelled = sum(
            self.coordinator.cancel(h.run_id, CancelReason.SHUTDOWN) for h in self.table
        )
        step = trio.current_time()
        with trio.move_on_after(self.settings.cleanup_deadline + 1.0):
            await self.wait_idle()
        log.info(
            "shutdown.cleanups_done",
            extra={
                "seconds": round(trio.current_time() - step, 3),
                "cancelled": cancelled,
                "unfinished": self.live_runs,
            },
        )
        self.feed.close()  # the dashboard feeds end with the runs
        self._stop.set()

    def hurry(self) -> None:
        """End the grace period of a shutdown under way; the cleanups still run."""
        if self._grace_scope is not None:
            self._grace_scope.cancel()

    async def wait_idle(self) -> None:
        """Wait until no run is pending or running."""
        await self.table.wait_idle()

    @property
    def live_runs(self) -> int:
        return self.table.live

    @property
    def loop(self) -> trio_asyncio.TrioEventLoop | None:
        """The trio-asyncio loop asyncio agents (and Quart's helpers) run on."""
        return self.runner.loop

    # -- runs -------------------------------------------------------------------

    async def create_run(self, request: RunRequest) -> RunHandle:
        """Persist a new ``pending`` run and start its task (see :mod:`runyard.admission`)."""
        assert self._nursery is not None, "serve() has started"
        if request.webhook is not None:
            self.webhooks.policy.check_url(request.webhook)  # Invalid names the field
        return await self.admission.admit(request, self._nursery, lambda: self.accepting)

    def watch(self) -> trio.MemoryReceiveChannel[Run]:
        """A channel of every run as its status changes (see :class:`RunFeed`)."""
        return self.feed.watch()

    def get_handle(self, run_id: str) -> RunHandle | None:
        return self.table.get(run_id)

    async def get_run(self, run_id: str, *, thread_id: str | None = None, owner: str = "") -> Run:
        handle = self.table.get(run_id)
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
            await self.threads.get(thread_id, owner=owner)
        runs = await self.store.list_runs(
            thread_id, status=status, limit=limit, offset=offset, owner=owner
        )
        # Live runs are fresher in memory (the store lags a status change by a commit).
        return [self._fresh(r) for r in runs]

    def _fresh(self, run: Run) -> Run:
        handle = self.table.get(run.run_id)
        return run if handle is None else handle.run

    async def cancel_run(
        self,
        run_id: str,
        *,
        thread_id: str | None = None,
        reason: CancelReason = CancelReason.USER,
        wait: bool = False,
        owner: str = "",
    ) -> Run:
        """Cancel a pending or running run, wherever it runs (a finished one is left as
        it is); with ``wait``, return once its final state is persisted."""
        run = await self.get_run(run_id, thread_id=thread_id, owner=owner)
        if run.status.terminal:
            return run
        await self.coordinator.stop(run_id, reason)
        if wait:
            await self.coordinator.wait_ended(run_id)
        return await self._latest(run)

    def cancel_nowait(self, run_id: str, reason: CancelReason) -> None:
        """Ask a live run to stop without waiting (a client that left, say)."""
        self.coordinator.cancel(run_id, reason)

    async def wait_run(
        self,
        run_id: str,
        *,
        thread_id: str | None = None,
        owner: str = "",
        cancel_on_exit: CancelReason | None = None,
    ) -> Run:
        """Wait (without polling here) until the run is terminal; return its final row.

        With ``cancel_on_exit``, a waiter that leaves early (it is cancelled:
        its client disconnected) cancels the run with that reason. That cancel
        does not block; the run persists its own final state.
        """
        run = await self.get_run(run_id, thread_id=thread_id, owner=owner)
        if run.status.terminal:
            return run
        try:
            with self.table.waiting(owner):
                await self.coordinator.wait_ended(run_id)
        finally:
            if cancel_on_exit is not None:
                self.coordinator.cancel(run_id, cancel_on_exit)  # no-op once it has ended
        return await self._latest(run)

    async def _latest(self, run: Run) -> Run:
        """The run as it is now: live here, in memory; else as stored (as it was, if
        it is gone: a rollback deletes it)."""
        handle = self.table.get(run.run_id)
        if handle is not None:
            return handle.run
        return await self.store.get_run(run.run_id) or run

    def check_wait_room(self, owner: str) -> None:
        """Raise :class:`TooManyRequests` if ``owner`` may not open another wait now."""
        self.table.check_wait_room(owner)

    async def delete_run(
        self, run_id: str, *, thread_id: str | None = None, owner: str = ""
    ) -> None:
        run = await self.get_run(run_id, thread_id=thread_id, owner=owner)
        if not run.status.terminal:
            raise Conflict(f"run {run_id} is {run.status}; cancel it first")
        handle = self.table.get(run_id)
        if handle is not None and not handle.finished.is_set():
            raise Conflict(f"run {run_id} is still finishing")
        await self.store.delete_run(run_id)
        if handle is not None:
            self.runner.forget(handle)

    async def last_seq(self, run_id: str) -> int:
        """The id of the run's newest event a client could have seen (-1: none)."""
        run_log = self.bus.get(run_id)
        if run_log is not None:
            return run_log.published
        return await self.store.last_seq(run_id)

    def subscribe(self, run_id: str, after_seq: int = -1, *, limited: bool = False) -> Subscription:
        """Every event of the run after ``after_seq``; ``limited`` counts it
        against the subscribers-per-run limit (a client's stream)."""
        release = self.table.streaming(run_id) if limited else None
        subscription = self.bus.subscribe(run_id, after_seq)
        subscription.on_close = release
        return subscription


async def _within(
    scope: trio.CancelScope,
    serve: Callable[..., Awaitable[object]],
    *,
    task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED,
) -> None:
    """``serve(task_status=...)`` under ``scope``, which the supervisor cancels when it
    is time (a shielded one outlives the supervisor's own cancellation)."""
    with scope:
        await serve(task_status=task_status)
