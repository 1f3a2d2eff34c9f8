"""Counters the engine keeps as it works, read by ``/metrics`` at scrape time.

Each is a plain attribute or a small fixed-bucket :class:`Histogram`,
updated where the thing happens: the cost on the path that counts is an
addition (and a bisect for a histogram), never a lock or an allocation, and
all the formatting is done by whoever reads them (:mod:`runyard.http.metrics`).
They count since this process started; nothing here is persisted. Every
update happens on the trio thread, so none needs a lock.
"""

from __future__ import annotations

import bisect
import collections
import dataclasses
import math
from collections.abc import Sequence

# Upper bounds (seconds) for latencies from half a millisecond to a minute.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                   5.0, 10.0, 30.0, 60.0)  # fmt: skip
# Upper bounds (seconds) for a run's life, from a tenth of a second to a day.
RUN_BUCKETS = (0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 14400.0, 86400.0)
# Upper bounds for events in one transaction; the commit writer's batch stops at 1024.
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


class Histogram:
    """Observations counted in fixed buckets, plus their sum (Prometheus' shape)."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)  # the last one: above every bound
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value

    @property
    def count(self) -> int:
        return sum(self.counts)

    def cumulative(self) -> list[tuple[float, int]]:
        """``(upper bound, count at or below it)`` pairs, ending with infinity."""
        pairs: list[tuple[float, int]] = []
        total = 0
        for bound, n in zip((*self.bounds, math.inf), self.counts, strict=True):
            total += n
            pairs.append((bound, total))
        return pairs


class RunStats:
    """Runs this process started and finished, by agent (and final status)."""

    def __init__(self) -> None:
        self.admitted: collections.Counter[str] = collections.Counter()
        self.finished: collections.Counter[tuple[str, str]] = collections.Counter()
        self.durations: dict[str, Histogram] = {}

    def finish(self, agent: str, status: str, seconds: float) -> None:
        self.finished[agent, status] += 1
        histogram = self.durations.get(agent)
        if histogram is None:
            histogram = self.durations[agent] = Histogram(RUN_BUCKETS)
        histogram.observe(max(0.0, seconds))  # wall-clock seconds: the clock may step back


class CommitStats:
    """The commit writer's transactions: how many events each carried, how long it took."""

    def __init__(self) -> None:
        self.events = 0  # events committed (a run's final events included)
        self.failures = 0  # transactions the store refused
        self.batch_events = Histogram(BATCH_BUCKETS)
        self.seconds = Histogram(LATENCY_BUCKETS)

    def committed(self, events: int, seconds: float) -> None:
        self.events += events
        self.batch_events.observe(events)
        self.seconds.observe(seconds)


@dataclasses.dataclass(slots=True)
class StoreStats:
    """Reads and writes that met a busy database (retried) or ended in ``StoreError``."""

    retries: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    errors: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)


# Every store of this process: the back-off (store/retry.py) is a module function.
STORE = StoreStats()


class HttpStats:
    """Requests by route template, method and status; their latency; bytes streamed."""

    def __init__(self) -> None:
        self.requests: collections.Counter[tuple[str, str, int]] = collections.Counter()
        self.seconds: dict[tuple[str, str], Histogram] = {}
        self.stream_bytes = 0  # bytes of run streams written (SSE frames and heartbeats)

    def request(self, route: str, method: str, status: int, seconds: float) -> None:
        self.requests[route, method, status] += 1
        histogram = self.seconds.get((route, method))
        if histogram is None:
            histogram = self.seconds[route, method] = Histogram(LATENCY_BUCKETS)
        histogram.observe(seconds)
