"""The whole lifetime of a runyard process, top to bottom.

``serve`` opens the store, then runyard's own root nursery, which holds the
supervisor (and so every run) and hypercorn. Shutdown runs in this order,
each step bounded and logged with its duration:

1. stop taking runs (run-creating requests get 503 with ``Retry-After``);
2. a grace period in which runs may finish on their own;
3. cancel the rest: each run's shielded cleanup persists its final state
   within the cleanup deadline; every stream gets its ``end``, every
   ``/wait`` its answer;
4. stop hypercorn (nothing is left in flight, so it stops at once);
5. close the writer, then the database, last.

The upper bound is grace + cleanup deadline + http_graceful_timeout + about
two seconds. hypercorn on its own would drain connections *before* the app's
shutdown; owning the nursery is what gives this order.
"""

from __future__ import annotations

import dataclasses
import logging
import signal
import threading
import time
from typing import Any

import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve as hypercorn_serve

from .config import ConfigError, Settings
from .fanout import FanOut
from .http.app import create_app
from .store import redact, store_for
from .store.url import is_postgres
from .supervisor import Supervisor

log = logging.getLogger("runyard.server")

# Slack on top of the configured bounds, for the steps that have none of their own.
SHUTDOWN_SLACK = 2.0
# How long the last write of a response may hold out against a cancellation.
LAST_SEND_DEADLINE = 2.0


@dataclasses.dataclass(slots=True)
class Server:
    """A running server, as handed to ``nursery.start(serve, settings)``."""

    url: str
    port: int
    supervisor: Supervisor
    settings: Settings
    _stop: trio.Event = dataclasses.field(default_factory=trio.Event)
    stopped: trio.Event = dataclasses.field(default_factory=trio.Event)
    exit_status: int = 0  # 1: it stopped on its own, its replica's lease lost

    def request_stop(self) -> None:
        """Begin the ordered shutdown (a second call shortens the grace period)."""
        if self._stop.is_set():
            self.supervisor.hurry()
        self._stop.set()


def shutdown_bound(settings: Settings) -> float:
    """Seconds from SIGTERM to exit, at most (docs/operations.md)."""
    s = settings
    return s.grace + s.cleanup_deadline + s.http_graceful_timeout + SHUTDOWN_SLACK


async def serve(
    settings: Settings,
    *,
    handle_signals: bool = False,
    task_status: trio.TaskStatus[Server] = trio.TASK_STATUS_IGNORED,
) -> int:
    """Run runyard until :meth:`Server.request_stop` (or SIGTERM/SIGINT), then drain;
    the process's exit status (see :attr:`Server.exit_status`)."""
    settings.check_exposure()
    registry = settings.registry()
    fanout = fanout_for(settings)
    store = store_for(settings.db, exclusive=True, replica=True)
    await store.open()
    try:
        async with trio.open_nursery() as root:
            supervisor = Supervisor(store, registry, settings, fanout=fanout)
            await root.start(supervisor.serve)
            http = _Http(create_app(supervisor, settings))
            binds: list[str] = await root.start(http.serve, _hypercorn_config(settings))
            url = binds[0]
            server = Server(url, int(url.rsplit(":", 1)[1]), supervisor, settings)
            if handle_signals:
                root.start_soon(_watch_signals, server)
            if supervisor.cluster is not None:
                root.start_soon(_stop_when_lease_lost, server, supervisor.cluster.lease_lost)
            log.info("server.started", extra={"url": url, "db": redact(settings.db)})
            task_status.started(server)
            await server._stop.wait()
            await _drain(server, http)
            root.cancel_scope.cancel()
    finally:
        with trio.CancelScope(shield=True):
            await store.aclose()
        log.info("server.stopped")
    return server.exit_status


async def _stop_when_lease_lost(server: Server, lease_lost: trio.Event) -> None:
    """A replica reaped by the others (it was paused or cut off past its lease) has
    stopped its runs; the process stops too, so that a fresh one joins."""
    await lease_lost.wait()
    log.error("server.lease_lost", extra={"exit_status": 1})
    server.exit_status = 1
    server.request_stop()


def check_bus(settings: Settings) -> None:
    """:class:`ConfigError` unless ``bus`` is empty or can serve: a Redis URL, replicas on
    a PostgreSQL ``db``, and the ``redis`` extra installed."""
    if not settings.bus:
        return
    if not is_postgres(settings.db):
        raise ConfigError("bus: replicas share a PostgreSQL --db; a SQLite server has no replicas")
    try:
        from .redis_fanout import check_url
    except ImportError:
        raise ConfigError("bus: a Redis bus needs coredis: pip install 'runyard[redis]'") from None
    check_url(settings.bus)


def fanout_for(settings: Settings) -> FanOut | None:
    """The fan-out ``bus`` names (None for none); :class:`ConfigError` if it cannot serve."""
    check_bus(settings)
    if not settings.bus:
        return None
    from .redis_fanout import RedisFanOut

    return RedisFanOut(settings.bus)


async def _drain(server: Server, http: _Http) -> None:
    settings = server.settings
    began = time.monotonic()
    log.info("shutdown.begin", extra={"live_runs": server.supervisor.live_runs})
    await server.supervisor.shutdown(settings.grace)
    log.info("shutdown.runs_persisted", extra={"seconds": round(time.monotonic() - began, 3)})
    step = time.monotonic()
    await http.stop(settings.http_graceful_timeout)
    log.info("shutdown.http_stopped", extra={"seconds": round(time.monotonic() - step, 3)})
    server.stopped.set()


class _Http:
    """hypercorn inside a cancel scope of ours, and a count of requests in flight.

    Why the last body message is sent shielded: hypercorn restarts a keep-alive
    connection's idle-timeout task from inside that send, and quart-trio
    cancels the request's nursery right after it; the cancellation caught the
    task as it started, so no idle task was left to close the connection,
    neither at ``keep_alive_timeout`` nor at shutdown (hypercorn then waited
    its whole ``graceful_timeout``). As a second line, once no request is in
    flight after the drain, hypercorn is cancelled outright: an idle
    connection has nothing to lose.
    """

    def __init__(self, app: Any) -> None:
        self._app = app
        self._in_flight = 0
        self._quiet = trio.Event()
        self._quiet.set()
        self._scope = trio.CancelScope()
        self._stop = trio.Event()
        self._done = trio.Event()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        self._in_flight += 1
        if self._quiet.is_set():
            self._quiet = trio.Event()

        async def send_last_shielded(message: Any) -> None:
            if message["type"] == "http.response.body" and not message.get("more_body"):
                with trio.CancelScope(shield=True) as shield:
                    shield.deadline = trio.current_time() + LAST_SEND_DEADLINE
                    await send(message)
                return
            await send(message)

        try:
            await self._app(scope, receive, send_last_shielded)
        finally:
            self._in_flight -= 1
            if self._in_flight == 0:
                self._quiet.set()

    async def serve(
        self,
        config: HypercornConfig,
        *,
        task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        try:
            with self._scope:
                await hypercorn_serve(
                    self, config, shutdown_trigger=self._stop.wait, task_status=task_status
                )
        finally:
            self._done.set()

    async def stop(self, patience: float) -> None:
        """Stop accepting; give requests in flight ``patience`` s; then close it all."""
        self._stop.set()
        with trio.move_on_after(patience):
            await self._quiet.wait()
        self._scope.cancel()
        await self._done.wait()


def _hypercorn_config(settings: Settings) -> HypercornConfig:
    config = HypercornConfig()
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    config.bind = [f"{host}:{settings.port}"]
    config.graceful_timeout = settings.http_graceful_timeout
    config.accesslog = None
    config.errorlog = logging.getLogger("runyard.hypercorn")
    config.keep_alive_timeout = settings.keep_alive_timeout
    # hypercorn's default backlog is 100: a burst of more new connections than
    # that overflows the accept queue and the dropped SYNs are retried by the
    # client only after a second (docs/benchmarks.md, workload 3).
    config.backlog = settings.backlog
    return config


async def _watch_signals(server: Server) -> None:
    if threading.current_thread() is not threading.main_thread():
        return
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for signum in signals:
            log.info("shutdown.signal", extra={"signal": signal.Signals(signum).name})
            server.request_stop()
