"""Who runs what, and when: the seam a cluster of replicas replaces.

Three rules live here, and nowhere else:

- **one active run per thread**: a thread's unfinished runs form a line; a
  run starts only when the runs ahead of it have persisted their final
  states (which is what makes ``interrupt`` and ``rollback`` safe), and
  decisions about one thread (``reject``, creating it) take its lock;
- **cancel delivery**: a cancel reaches the run wherever it executes;
- **recovery**: which runs were left unfinished by a process that died.

:class:`LocalCoordinator` is today's single process: lines are deques of the
handles in the :class:`~runyard.runtable.RunTable`, locks are trio locks, and
every unfinished run in the store at start belongs to a dead process (the
SQLite store admits one process per database).
:class:`~runyard.cluster_coordinator.ClusterCoordinator` keeps the same
promises across replicas with the database as the line, leases per replica
and a signal for cancels (see docs/scaling.md).
"""

from __future__ import annotations

import collections
import contextlib
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from typing import Protocol

import trio

from .model import CancelReason, Run
from .runtable import RunHandle, RunTable
from .store import Store


class Coordinator(Protocol):
    """The per-thread line, the thread locks, cancel delivery and recovery."""

    def lock_thread(self, thread_id: str) -> AbstractAsyncContextManager[None]:
        """Serialise decisions about one thread (its creation, ``reject``, a new run)."""

    def line(self, thread_id: str) -> list[str]:
        """Ids of the thread's unfinished runs this process holds, in the order they will run."""

    async def unfinished(self, thread_id: str) -> list[str]:
        """Ids of the thread's unfinished runs wherever they run, in the order they will run
        (take the thread's lock first for an answer that holds)."""

    def join_line(self, handle: RunHandle) -> None:
        """Put a new run at the end of its thread's line."""

    async def wait_turn(self, handle: RunHandle) -> None:
        """Return once every run ahead of ``handle`` has persisted its final state.

        Cancelling the wait leaves the run in its line; it leaves with
        :meth:`leave_line` once its own final state is persisted.
        """

    def leave_line(self, handle: RunHandle) -> None:
        """Take a run whose final state is persisted out of its line."""

    def cancel(self, run_id: str, reason: CancelReason) -> bool:
        """Deliver a cancel to the run, wherever it executes, without waiting; False if
        it is not live here (it may still be elsewhere: the cancel goes on its way)."""

    async def stop(self, run_id: str, reason: CancelReason) -> bool:
        """Deliver a cancel and return once it is recorded; False if the run is not live."""

    async def wait_ended(self, run_id: str) -> None:
        """Return once the run's final state is persisted, wherever it runs."""

    async def orphaned_runs(self) -> list[Run]:
        """Unfinished runs whose process has died, oldest first."""


class LocalCoordinator:
    """The :class:`Coordinator` of one process that owns its database alone."""

    def __init__(self, table: RunTable, store: Store) -> None:
        self._table = table
        self._store = store
        self._lines: dict[str, collections.deque[RunHandle]] = {}
        self._locks: dict[str, trio.Lock] = {}

    @contextlib.asynccontextmanager
    async def lock_thread(self, thread_id: str) -> AsyncIterator[None]:
        # A lock lives only while in use: one per thread id ever seen would pile up.
        lock = self._locks.setdefault(thread_id, trio.Lock())
        try:
            async with lock:
                yield
        finally:
            if not lock.locked() and lock.statistics().tasks_waiting == 0:
                self._locks.pop(thread_id, None)

    @property
    def locks_held(self) -> int:
        """Thread locks in memory (held or waited for)."""
        return len(self._locks)

    def line(self, thread_id: str) -> list[str]:
        return [h.run_id for h in self._lines.get(thread_id, ())]

    async def unfinished(self, thread_id: str) -> list[str]:
        return self.line(thread_id)

    def join_line(self, handle: RunHandle) -> None:
        self._lines.setdefault(handle.run.thread_id, collections.deque()).append(handle)

    async def wait_turn(self, handle: RunHandle) -> None:
        line = self._lines[handle.run.thread_id]
        while line[0] is not handle:
            await line[0].finished.wait()

    def leave_line(self, handle: RunHandle) -> None:
        line = self._lines.get(handle.run.thread_id)
        if line is None:
            return
        with contextlib.suppress(ValueError):
            line.remove(handle)
        if not line:
            del self._lines[handle.run.thread_id]

    def cancel(self, run_id: str, reason: CancelReason) -> bool:
        handle = self._table.get(run_id)
        if handle is None or handle.finished.is_set():
            return False
        handle.cancel(reason)
        return True

    async def stop(self, run_id: str, reason: CancelReason) -> bool:
        return self.cancel(run_id, reason)

    async def wait_ended(self, run_id: str) -> None:
        handle = self._table.get(run_id)
        if handle is not None:
            await handle.finished.wait()

    async def orphaned_runs(self) -> list[Run]:
        return await self._store.unfinished_runs()
