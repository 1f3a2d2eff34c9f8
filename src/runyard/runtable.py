"""The live runs of this process, and what they count against the limits.

A :class:`RunHandle` is one run while this process executes it: its row, its
log, its cancel scope and an event set once its final state is persisted.
The :class:`RunTable` finds handles by id and keeps the admission counters
(active runs in all, per owner; open waits per owner; open streams per run)
behind pairs that always undo what they did: :meth:`RunTable.admit` /
:meth:`RunTable.release`, :meth:`RunTable.waiting`, :meth:`RunTable.streaming`.
"""

from __future__ import annotations

import collections
import contextlib
from collections.abc import Callable, Iterator

import trio

from .agents import Agent
from .config import Settings
from .errors import TooManyRequests
from .events import RunLog
from .model import CancelReason, Run, RunRequest


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
        self.store_failed = False  # some of its events could not be committed
        self.persist_error: str | None = None  # why the final state could not be written
        self.last_values: str | None = None  # the agent's last "values" event, as JSON
        self.running_at: float | None = None  # set when its running mark came with its row
        self.finished = trio.Event()  # set once the final state is persisted (or given up)

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


class RunTable:
    """Handles by run id, and the counters the limits in :class:`Settings` bound."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._handles: dict[str, RunHandle] = {}
        self._live = 0  # admitted and not yet released
        self._by_owner: collections.Counter[str] = collections.Counter()
        self._waits: collections.Counter[str] = collections.Counter()
        self._streams: collections.Counter[str] = collections.Counter()
        self._idle = trio.Event()
        self._idle.set()

    def get(self, run_id: str) -> RunHandle | None:
        return self._handles.get(run_id)

    def __iter__(self) -> Iterator[RunHandle]:
        return iter(list(self._handles.values()))

    @property
    def live(self) -> int:
        """Runs admitted whose final state is not persisted yet."""
        return self._live

    @property
    def open_streams(self) -> int:
        """Client streams of runs open now (what ``max_subscribers_per_run`` bounds)."""
        return sum(self._streams.values())

    @property
    def open_waits(self) -> int:
        """``/wait`` and ``/join`` requests open now."""
        return sum(self._waits.values())

    async def wait_idle(self) -> None:
        """Wait until no admitted run is left unreleased."""
        await self._idle.wait()

    def check_room(self, owner: str) -> None:
        """Raise :class:`TooManyRequests` if ``owner`` may not start a run now."""
        s = self._settings
        if self._live >= s.max_active_runs:
            raise TooManyRequests(f"the server has {s.max_active_runs} active runs; retry later")
        if self._by_owner[owner] >= s.max_active_runs_per_owner:
            raise TooManyRequests(
                f"you have {s.max_active_runs_per_owner} active runs; retry when some end"
            )

    def admit(self, handle: RunHandle) -> None:
        """Count a run as live; :meth:`release` undoes exactly this."""
        self._handles[handle.run_id] = handle
        self._live += 1
        self._by_owner[handle.run.owner] += 1
        if self._idle.is_set():
            self._idle = trio.Event()

    def release(self, handle: RunHandle) -> None:
        """The run's final state is persisted: it no longer counts (it stays findable)."""
        self._live -= 1
        self._by_owner[handle.run.owner] -= 1
        if self._by_owner[handle.run.owner] <= 0:
            del self._by_owner[handle.run.owner]
        if self._live == 0:
            self._idle.set()

    def forget(self, handle: RunHandle) -> bool:
        """Drop a released handle; False if another handle has its id (or none)."""
        if self._handles.get(handle.run_id) is not handle:
            return False
        del self._handles[handle.run_id]
        return True

    def check_wait_room(self, owner: str) -> None:
        """Raise :class:`TooManyRequests` if ``owner`` may not open another wait now."""
        if self._waits[owner] >= self._settings.max_waits_per_owner:
            raise TooManyRequests("too many open waits; retry later")

    @contextlib.contextmanager
    def waiting(self, owner: str) -> Iterator[None]:
        """Count an open /wait or /join of ``owner``; raise if there are too many."""
        self.check_wait_room(owner)
        self._waits[owner] += 1
        try:
            yield
        finally:
            self._waits[owner] -= 1
            if self._waits[owner] <= 0:
                del self._waits[owner]

    def streaming(self, run_id: str) -> Callable[[], None]:
        """Count an open stream of a run; call what it returns once, when it closes."""
        if self._streams[run_id] >= self._settings.max_subscribers_per_run:
            raise TooManyRequests("this run has too many open streams; retry later")
        self._streams[run_id] += 1

        def close() -> None:
            self._streams[run_id] -= 1
            if self._streams[run_id] <= 0:
                del self._streams[run_id]

        return close
