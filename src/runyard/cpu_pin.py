"""While graphs run, the process keeps to one CPU: the GIL changes hands faster there.

A graph runs in a thread of its own (:mod:`runyard.graph_loop`) and shares the
GIL with trio's thread. On two CPUs, each hand-over of the GIL has to wake the
other CPU, and the thread that just let go usually takes it back first, so
trio waited milliseconds to commit and send what the graph had streamed. On
one CPU the hand-over is a plain switch. Measured side by side
(docs/benchmarks.md): the 200-step loop about 40% faster, a chat turn's first
token 24 -> 19 ms.

So while the graph loop serves, :class:`CpuPin` pins every thread of the
process to one CPU (Linux, and only when more than one is allowed). Every
:data:`REHOME_INTERVAL` it looks at the CPUs' load and moves the threads to
another CPU if that one was idler than the other processes left ours, by
:data:`REHOME_MARGIN`. When the loop stops, every thread gets back the CPUs it
was allowed. Threads started meanwhile inherit the pin, and so do processes a
graph starts: with graphs that start CPU-heavy processes, set ``pin_cpu`` to
false.
"""

from __future__ import annotations

import logging
import os
import sys
import time

import trio

log = logging.getLogger("runyard.cpu_pin")

REHOME_INTERVAL = 10.0  # seconds between looks at the CPUs' load
REHOME_MARGIN = 0.2  # share of a CPU another one must be idler by for the threads to move

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100  # /proc/stat's unit


class CpuPin:
    """Every thread of this process on one CPU, from :meth:`serve` to its end."""

    def __init__(self) -> None:
        linux = sys.platform == "linux"
        self.allowed: set[int] = os.sched_getaffinity(0) if linux else set()
        self.cpu: int | None = None  # the CPU pinned to, while pinned

    @property
    def possible(self) -> bool:
        return len(self.allowed) > 1

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Pin, then report started; re-choose the CPU every :data:`REHOME_INTERVAL`;
        unpin when cancelled."""
        if not self.possible:
            task_status.started()
            return
        try:
            try:
                here = _cpu_of_this_thread()
                self._move(here if here in self.allowed else min(self.allowed))
            finally:
                task_status.started()
            load, own, at = _cpu_load(), _own_time(), time.monotonic()
            while True:
                await trio.sleep(REHOME_INTERVAL)
                now_load, now_own, now_at = _cpu_load(), _own_time(), time.monotonic()
                busy = {cpu: now_load.get(cpu, 0.0) - load.get(cpu, 0.0) for cpu in self.allowed}
                assert self.cpu is not None
                busy[self.cpu] -= now_own - own  # ours counts where it goes
                better = choose(self.cpu, busy, now_at - at)
                if better != self.cpu:
                    self._move(better)
                load, own, at = now_load, now_own, now_at
        except OSError as exc:  # pinning refused (a cpuset changed under us, say): stop trying
            log.warning("cpu.pin_failed", extra={"error": exc.strerror})
        finally:
            self._release()

    def _move(self, cpu: int) -> None:
        _set_all({cpu})
        self.cpu = cpu
        log.info("cpu.pinned", extra={"cpu": cpu})

    def _release(self) -> None:
        self.cpu = None
        try:
            _set_all(self.allowed)
        except OSError as exc:
            log.warning("cpu.unpin_failed", extra={"error": exc.strerror})


def choose(current: int, busy: dict[int, float], seconds: float) -> int:
    """The CPU to be on: ``current`` unless another was idler by :data:`REHOME_MARGIN`.

    ``busy``: seconds each CPU worked for other processes over the last ``seconds``.
    """
    best = min(busy, key=lambda cpu: (busy[cpu], cpu != current))
    if (busy[current] - busy[best]) / seconds > REHOME_MARGIN:
        return best
    return current


def _set_all(cpus: set[int]) -> None:
    """Every thread of the process onto ``cpus`` (a thread that ended meanwhile is skipped)."""
    for tid in os.listdir("/proc/self/task"):
        try:
            os.sched_setaffinity(int(tid), cpus)
        except ProcessLookupError:
            continue


def _cpu_of_this_thread() -> int:
    """The CPU this thread last ran on (field 39 of /proc/thread-self/stat)."""
    with open("/proc/thread-self/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[36])


def _cpu_load() -> dict[int, float]:
    """Seconds each CPU has worked since boot (not idle, not waiting for the disk)."""
    load: dict[int, float] = {}
    with open("/proc/stat") as f:
        for line in f:
            name, *fields = line.split()
            if not name.startswith("cpu") or name == "cpu":
                continue
            ticks = [int(x) for x in fields[:8]]  # user nice system idle iowait irq softirq steal
            load[int(name[3:])] = (sum(ticks) - ticks[3] - ticks[4]) / _TICK
    return load


def _own_time() -> float:
    """Seconds of CPU this process has used."""
    times = os.times()
    return times.user + times.system
