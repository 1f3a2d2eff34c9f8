"""What each request leaves behind, and ``GET /metrics``.

Every request gets an id: the caller's ``X-Request-ID`` when it is a safe
one (:data:`SAFE_REQUEST_ID`), else a new one. It is echoed in the response
and set in :data:`runyard.logs.request_id`, so every log line the request
causes carries it, and so do the lines of a run it creates (the run's task
inherits the request task's context). Each request is counted by route
template, method and status, timed to its response's headers (a stream's
length is not its latency), and logged as one ``http.request`` line on the
``runyard.access`` logger.

``/metrics`` is the Prometheus text format from a registry of our own whose
collector reads the engine's counters (:mod:`runyard.stats`) at scrape time,
so a request, an event or a commit pays an addition, not a metrics library.
It sits behind the tokens like every route but those of :mod:`.access`.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import re
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any
from urllib.parse import quote

from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from quart import Blueprint, Quart, Response, current_app, g, request

from .. import __version__, logs
from ..cluster_events import ClusterEventBus
from ..model import RunStatus
from ..runner import agent_label
from ..stats import STORE, Histogram, HttpStats
from ..supervisor import Supervisor
from .routes import Media, Routes

access_log = logging.getLogger("runyard.access")

# The key of the app's extensions that holds the :class:`Metrics`.
EXTENSION = "runyard.metrics"
REQUEST_ID_HEADER = "X-Request-ID"
# A caller's request id is kept only if it is this: short, and nothing a log or a header
# could misread (no spaces, quotes, CR or LF). Covers UUIDs, ULIDs, hex and base64 ids.
SAFE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:+=/-]{1,128}")
# The route label of a request no route matched (a 404): paths are not a bounded set.
UNMATCHED = "<unmatched>"
# Methods counted as themselves; any other is "OTHER", for the same reason.
METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})
# The text format generate_latest writes (Prometheus' classic one, every version reads it).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

metrics = Blueprint("metrics", __name__)
route = Routes(metrics)


@dataclasses.dataclass(frozen=True, slots=True)
class Metrics:
    """This app's request counters and the registry ``/metrics`` renders."""

    http: HttpStats
    registry: CollectorRegistry


def install(app: Quart, supervisor: Supervisor) -> None:
    """Give requests their id, count and log them; serve ``/metrics``.

    Install it before :mod:`.access`: its hook then runs first (a refused
    request has an id too) and its after-hook last (it sees the final status).
    """
    registry = CollectorRegistry()
    registry.register(EngineCollector(supervisor, http := HttpStats()))
    ProcessCollector(registry=registry)  # CPU, memory, open files: read from /proc per scrape
    app.extensions[EXTENSION] = Metrics(http, registry)
    app.before_request(_begin)
    app.after_request(_finish)
    app.register_blueprint(metrics)


def http_stats() -> HttpStats:
    """The current app's request counters (for the streams to add their bytes)."""
    found = current_app.extensions[EXTENSION]
    assert isinstance(found, Metrics)
    return found.http


@route(
    "/metrics",
    "GET",
    summary="Prometheus metrics (text format)",
    answers={200: Media(CONTENT_TYPE, "Prometheus text exposition format")},
)
async def metrics_text() -> Response:
    found: Metrics = current_app.extensions[EXTENSION]
    return Response(generate_latest(found.registry), content_type=CONTENT_TYPE)


async def _begin() -> None:
    rid = request.headers.get(REQUEST_ID_HEADER, "")
    if SAFE_REQUEST_ID.fullmatch(rid) is None:
        rid = uuid.uuid4().hex
    logs.request_id.set(rid)
    g.runyard_began = time.perf_counter()


async def _finish(response: Response) -> Response:
    seconds = time.perf_counter() - g.get("runyard_began", time.perf_counter())
    rid = logs.request_id.get()
    if rid is not None:
        response.headers[REQUEST_ID_HEADER] = rid
    rule = request.url_rule
    template = UNMATCHED if rule is None else rule.rule
    method = request.method if request.method in METHODS else "OTHER"
    status = response.status_code
    http_stats().request(template, method, status, seconds)
    if access_log.isEnabledFor(logging.INFO):
        access_log.info(
            "http.request",
            extra={
                "method": method,
                "path": quote(request.path, safe="/:@!$&'()*+,;=~"),  # no space, CR or LF
                "status": status,
                "ms": round(seconds * 1000, 2),
            },
        )
    return response


class EngineCollector(Collector):
    """Reads the engine's counters and live state when Prometheus scrapes."""

    def __init__(self, supervisor: Supervisor, http: HttpStats) -> None:
        self._supervisor = supervisor
        self._http = http

    def collect(self) -> Iterator[Metric]:
        yield from self._service()
        yield from self._runs()
        yield from self._commits()
        yield from self._store()
        yield from self._crons_and_webhooks()
        yield from self._cluster()
        yield from self._requests()

    def _service(self) -> Iterator[Metric]:
        sup = self._supervisor
        info = GaugeMetricFamily(
            "runyard_info",
            "This runyard: version, durability mode",
            labels=["version", "durability"],
        )
        info.add_metric([__version__, sup.settings.durability], 1)
        yield info
        yield GaugeMetricFamily(
            "runyard_accepting_runs", "1 while new runs are taken", value=int(sup.accepting)
        )
        yield GaugeMetricFamily(
            "runyard_draining", "1 once shutdown has begun", value=int(sup.draining)
        )

    def _runs(self) -> Iterator[Metric]:
        stats = self._supervisor.runner.stats
        yield _labelled(
            CounterMetricFamily,
            "runyard_runs_admitted",
            "Runs this process started (new ones and ones resumed after a restart)",
            ["agent"],
            stats.admitted,
        )
        yield _labelled(
            CounterMetricFamily,
            "runyard_runs_finished",
            "Runs that reached a final state in this process, by agent and status",
            ["agent", "status"],
            stats.finished,
        )
        running: dict[str, int] = {}
        pending: dict[str, int] = {}
        for handle in self._supervisor.table:
            if handle.finished.is_set():
                continue
            into = running if handle.run.status is RunStatus.RUNNING else pending
            label = agent_label(handle.agent)
            into[label] = into.get(label, 0) + 1
        yield _labelled(
            GaugeMetricFamily,
            "runyard_runs_active",
            "Runs running now (their agent started)",
            ["agent"],
            running,
        )
        yield _labelled(
            GaugeMetricFamily,
            "runyard_runs_queued",
            "Runs pending now: waiting for after_seconds or their turn on the thread",
            ["agent"],
            pending,
        )
        yield _histograms(
            "runyard_run_duration_seconds",
            "Seconds from a run's creation to its final state, by agent",
            ["agent"],
            [((agent,), h) for agent, h in stats.durations.items()],
        )
        table = self._supervisor.table
        yield GaugeMetricFamily(
            "runyard_streams_open", "Run streams open now", value=table.open_streams
        )
        yield GaugeMetricFamily(
            "runyard_waits_open", "/wait and /join requests open now", value=table.open_waits
        )
        yield CounterMetricFamily(
            "runyard_stream_bytes", "Bytes written to run streams", value=self._http.stream_bytes
        )

    def _commits(self) -> Iterator[Metric]:
        writer = self._supervisor.writer
        stats = writer.stats
        yield CounterMetricFamily(
            "runyard_events_committed", "Events committed to the store", value=stats.events
        )
        yield CounterMetricFamily(
            "runyard_commit_transactions", "Group-commit transactions", value=writer.transactions
        )
        yield CounterMetricFamily(
            "runyard_commit_failures",
            "Group-commit transactions the store refused",
            value=stats.failures,
        )
        yield GaugeMetricFamily(
            "runyard_commit_pending_events",
            "Events queued, not yet committed",
            value=writer.pending,
        )
        yield _histograms(
            "runyard_commit_batch_events",
            "Events in one group-commit transaction",
            [],
            [((), stats.batch_events)],
        )
        yield _histograms(
            "runyard_commit_seconds",
            "Seconds one group-commit transaction took",
            [],
            [((), stats.seconds)],
        )

    def _store(self) -> Iterator[Metric]:
        retries = CounterMetricFamily(
            "runyard_store_retries",
            "Store reads and writes tried again because the database was busy",
            labels=["action"],
        )
        errors = CounterMetricFamily(
            "runyard_store_errors", "Store reads and writes that failed", labels=["action"]
        )
        for action in ("read", "write"):
            retries.add_metric([action], STORE.retries[action])
            errors.add_metric([action], STORE.errors[action])
        yield retries
        yield errors

    def _crons_and_webhooks(self) -> Iterator[Metric]:
        crons = self._supervisor.cron_scheduler.stats
        yield CounterMetricFamily(
            "runyard_cron_runs", "Runs the cron scheduler started, one per time", value=crons.fired
        )
        yield _labelled(
            CounterMetricFamily,
            "runyard_cron_times_skipped",
            "Cron times whose run was refused (thread gone, busy thread under reject, a limit)",
            ["reason"],
            crons.skipped,
        )
        hooks = self._supervisor.webhooks.stats
        yield _labelled(
            CounterMetricFamily,
            "runyard_webhook_attempts",
            "Webhook POSTs by outcome",
            ["outcome"],
            hooks.attempts,
        )
        yield _labelled(
            CounterMetricFamily,
            "runyard_webhooks_settled",
            "Webhooks delivered, given up (failed) or refused (a forbidden address)",
            ["state"],
            hooks.settled,
        )

    def _cluster(self) -> Iterator[Metric]:
        """A replica's: the runs of other replicas it followed, and its fan-out."""
        sup = self._supervisor
        if isinstance(sup.bus, ClusterEventBus):
            yield _labelled(
                CounterMetricFamily,
                "runyard_followed_events",
                "Events of other replicas' runs published here, by source (store, fanout)",
                ["source"],
                sup.bus.followed,
            )
        if sup.fanout is None:
            return
        yield GaugeMetricFamily(
            "runyard_fanout_up", "1 while the fan-out (Redis) carries events", value=sup.fanout.up
        )
        carried = sup.fanout.statistics()
        yield _labelled(
            CounterMetricFamily,
            "runyard_fanout_events",
            "Events this replica sent through the fan-out, or dropped (down, behind)",
            ["outcome"],
            {"sent": carried.sent, "dropped": carried.dropped},
        )
        yield _labelled(
            CounterMetricFamily,
            "runyard_fanout_messages",
            "Fan-out messages received for runs followed here, or dropped (a full reader)",
            ["outcome"],
            {"received": carried.received, "overflowed": carried.overflowed},
        )

    def _requests(self) -> Iterator[Metric]:
        yield _labelled(
            CounterMetricFamily,
            "runyard_http_requests",
            "HTTP requests by route template, method and status",
            ["route", "method", "status"],
            self._http.requests,
        )
        yield _histograms(
            "runyard_http_request_duration_seconds",
            "Seconds from a request's start to its response's headers",
            ["route", "method"],
            self._http.seconds.items(),
        )


def _labelled(
    kind: type[CounterMetricFamily] | type[GaugeMetricFamily],
    name: str,
    documentation: str,
    labels: list[str],
    counts: Mapping[Any, float],
) -> Metric:
    """A counter or gauge with a sample per key of ``counts``, in order: the key is the
    one label's value, or a tuple of the ``labels``' values."""
    family = kind(name, documentation, labels=labels)
    for key, n in sorted(counts.items()):
        family.add_metric([str(v) for v in (key if isinstance(key, tuple) else (key,))], n)
    return family


def _histograms(
    name: str,
    documentation: str,
    labels: list[str],
    by_labels: Iterable[tuple[Sequence[str], Histogram]],
) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, documentation, labels=labels)
    for values, histogram in sorted(by_labels, key=lambda pair: tuple(pair[0])):
        buckets = [(_le(bound), n) for bound, n in histogram.cumulative()]
        family.add_metric(list(values), buckets, histogram.sum)
    return family


def _le(bound: float) -> str:
    return "+Inf" if math.isinf(bound) else repr(float(bound))
