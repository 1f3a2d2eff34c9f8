"""A plain asyncio event loop in a thread of its own, where LangGraph graphs run.

Why not trio-asyncio, as plain asyncio agents do: under trio-asyncio every
asyncio callback costs a pass of trio's scheduler, 28-35 µs against 3-5 µs
on a plain asyncio loop, and LangGraph runs 33 callbacks a step and one per
streamed chunk (docs/benchmarks.md, "Where runyard's graph path spends its
time"). On a loop of its own LangGraph runs at its in-process speed, and the
two sides talk through three doors:

- :meth:`GraphLoop.run` (trio → asyncio): run a coroutine on the loop and
  await its result, which comes after everything the coroutine posted (so a
  run's last events are logged before its final state, however it ended). A
  trio cancel cancels the asyncio task and waits (a bounded, shielded wait)
  for it to end, so a node's ``finally`` blocks run before the run's cleanup.
- :meth:`GraphLoop.post` (asyncio → trio, no answer): queue a plain function
  to run on trio. Posts run in order, in batches: one trio wake-up carries
  every post made since the last, so a run streaming thousands of events
  crosses once per batch, not once per event.
- :meth:`GraphLoop.to_trio` (asyncio → trio, awaited): run a trio coroutine
  function and await its result on the asyncio side. It is queued behind the
  posts made before it, so it sees them applied. :meth:`GraphLoop.ahead`
  starts such a call from trio instead, before the graph side asks for it.

The loop lives from :meth:`GraphLoop.serve` to its cancellation; the
supervisor stops it after the runs and the writer. Meanwhile the GIL changes
hands every :data:`GIL_SWITCH_INTERVAL` instead of Python's 5 ms: a graph
streaming tokens holds it while trio waits to send them, and each wait is
bounded by the interval (measured: time to first token 27 -> 22 ms). And,
given a :class:`~runyard.cpu_pin.CpuPin` (the ``pin_cpu`` setting), the
process keeps to one CPU, where the GIL changes hands faster still.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import trio

from .cpu_pin import CpuPin
from .errors import ShuttingDown

log = logging.getLogger("runyard.graph_loop")

T = TypeVar("T")

# The names of the trio tasks that work for the graph loop start with this.
TASK_PREFIX = "graph_loop:"

# How long a cancelled run waits for its graph's asyncio task to end (its nodes'
# ``finally`` blocks) before the run's cleanup goes on without it.
CANCEL_WAIT = 5.0  # seconds

# How often a thread that wants the GIL may take it from a busy one, while graphs run.
# On one CPU (the pin) a switch is cheap; each GIL release trio makes (a socket write, a
# commit) waited for the graph thread's turn to end: 0.5 ms -> 0.1 ms, first token -2 ms.
GIL_SWITCH_INTERVAL = 0.0001  # seconds (Python's default: 0.005)


class GraphLoop:
    """The graph thread's asyncio loop, and the doors between it and trio."""

    def __init__(self, pin: CpuPin | None = None) -> None:
        self._pin = pin  # keeps the process on one CPU while the loop serves
        self._loop: asyncio.AbstractEventLoop | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._nursery: trio.Nursery | None = None
        self._lock = threading.Lock()
        self._posted: list[tuple[Callable[..., object], tuple[Any, ...]]] = []
        self._scheduled = False  # a wake-up of the bridge is on its way
        self._wake = trio.Event()

    @property
    def token(self) -> trio.lowlevel.TrioToken:
        """The trio run's token, for blocking calls from worker threads."""
        assert self._token is not None, "serve() has started"
        return self._token

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the loop's thread and the trio side of :meth:`post` until cancelled."""
        self._token = trio.lowlevel.current_trio_token()
        # Made directly: trio-asyncio's policy refuses new_event_loop() within trio.
        loop = asyncio.SelectorEventLoop()
        thread = threading.Thread(
            target=_run_forever, args=(loop,), name="runyard-graphs", daemon=True
        )
        thread.start()
        self._loop = loop
        switch_interval = sys.getswitchinterval()
        sys.setswitchinterval(min(switch_interval, GIL_SWITCH_INTERVAL))
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(self._bridge, name=f"{TASK_PREFIX}bridge")
                if self._pin is not None:
                    await nursery.start(self._pin.serve, name=f"{TASK_PREFIX}cpu pin")
                task_status.started()
        finally:
            sys.setswitchinterval(switch_interval)
            self._loop = None
            loop.call_soon_threadsafe(loop.stop)
            # The thread is a daemon: a graph that ignores its cancel cannot hold the exit up.
            with trio.move_on_after(CANCEL_WAIT, shield=True):
                await trio.to_thread.run_sync(thread.join, abandon_on_cancel=True)

    # -- trio → asyncio -------------------------------------------------------------

    async def run(self, fn: Callable[..., Coroutine[Any, Any, T]], *args: Any) -> T:
        """``await fn(*args)`` on the loop, from trio; a trio cancel cancels it there."""
        loop = self._loop
        if loop is None:
            raise ShuttingDown("the server is shutting down")
        done = trio.Event()
        started: list[asyncio.Task[T]] = []

        def start() -> None:
            task = loop.create_task(fn(*args))
            # Posted, so the caller resumes only after what the task posted before it ended.
            task.add_done_callback(lambda _: self.post(done.set))
            started.append(task)

        loop.call_soon_threadsafe(start)
        try:
            await done.wait()
        except trio.Cancelled:
            # ``start`` was queued first, so the task exists when this runs.
            loop.call_soon_threadsafe(lambda: started[0].cancel())
            with trio.move_on_after(CANCEL_WAIT, shield=True) as late:
                await done.wait()
            if late.cancelled_caught:
                log.warning("graph_loop.cancel_ignored", extra={"fn": _name(fn)})
            raise
        task = started[0]
        if task.cancelled():  # the loop stopped under it
            raise ShuttingDown("the server is shutting down")
        return task.result()

    # -- asyncio → trio -------------------------------------------------------------

    def post(self, fn: Callable[..., object], *args: Any) -> None:
        """Queue ``fn(*args)`` to run on trio, after everything posted before it.

        ``fn`` is a plain function; an exception it raises is logged, so
        callers that must know catch their own.
        """
        with self._lock:
            self._posted.append((fn, args))
            if self._scheduled:
                return
            self._scheduled = True
        self.token.run_sync_soon(self._wake_bridge)

    async def to_trio(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """``await fn(*args)`` on trio, from the loop, behind every earlier post.

        If the caller is cancelled meanwhile, the trio call still runs to its
        end; its result is dropped.
        """
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self.post(self._start_call, fn, args, future)
        return await future

    def ahead(self, fn: Callable[..., Awaitable[T]], *args: Any) -> asyncio.Future[T]:
        """From trio: start ``await fn(*args)`` now, for the loop to await later.

        A read the graph will need first (a run's checkpoint) then overlaps
        the graph's start instead of following it.
        """
        loop = self._loop
        if loop is None:
            raise ShuttingDown("the server is shutting down")
        future: asyncio.Future[T] = loop.create_future()
        self._start_call(fn, args, future)
        return future

    def _start_call(
        self, fn: Callable[..., Awaitable[T]], args: tuple[Any, ...], future: asyncio.Future[T]
    ) -> None:
        assert self._nursery is not None
        self._nursery.start_soon(self._call, fn, args, future, name=TASK_PREFIX + _name(fn))

    async def _call(
        self, fn: Callable[..., Awaitable[T]], args: tuple[Any, ...], future: asyncio.Future[T]
    ) -> None:
        loop = future.get_loop()
        try:
            result = await fn(*args)
        except Exception as exc:
            loop.call_soon_threadsafe(_settle, future, None, exc)
        else:
            loop.call_soon_threadsafe(_settle, future, result, None)

    def _wake_bridge(self) -> None:
        self._wake.set()

    async def _bridge(self) -> None:
        """Run the posts, batch by batch, in the order they were made."""
        while True:
            await self._wake.wait()
            self._wake = trio.Event()
            with self._lock:
                batch, self._posted = self._posted, []
                self._scheduled = False
            for fn, args in batch:
                try:
                    fn(*args)
                except Exception:
                    log.exception("graph_loop.post_failed", extra={"fn": _name(fn)})


def _run_forever(loop: asyncio.AbstractEventLoop) -> None:
    try:
        loop.run_forever()
    finally:
        loop.close()


def _settle(future: asyncio.Future[T], result: T | None, error: Exception | None) -> None:
    if future.cancelled():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)  # type: ignore[arg-type]


def _name(fn: Callable[..., object]) -> str:
    return getattr(fn, "__qualname__", None) or repr(fn)
