"""Webhooks: each run's final state POSTed to its ``webhook``, from a durable outbox.

The outbox row is written in the transaction of the run's final state
(:func:`runyard.outcome.webhook_of`), so a webhook is never lost: a kill -9
right after the final state still delivers after the restart. One task in
the supervisor's runs nursery sends what is due (woken by the run feed when
a run with a webhook ends, by its own timer for retries, and at least every
:data:`CHECK_INTERVAL` seconds, for rows another process wrote), at most
:data:`CONCURRENCY` at a time.

Each attempt first leases its row in the store (its due time moves past the
attempt's timeout), so one sender at a time has it, and one that dies leaves
a row that falls due again (at least once: receivers should drop a repeated
``X-Runyard-Delivery`` id). An attempt is a POST of the body as JSON, with
``webhook_sent_at`` added, bounded by ``webhook_timeout``:

- 2xx: delivered;
- any other status, a timeout, a refused connection: tried again after
  ``webhook_backoff`` seconds, doubled each time up to :data:`MAX_BACKOFF`,
  as long as ``webhook_retry_for`` seconds have not passed since the run ended;
  then it is given up (``failed``);
- an address :mod:`runyard.webhook_policy` forbids: ``refused``, not retried.

Every attempt is stored (listed by ``GET …/runs/{run_id}/webhook``), logged
(``webhook.attempt``) and counted (``/metrics``); none changes the run.
Redirects are not followed (a redirect is a non-2xx answer).

Signing: with ``webhook_secret`` set, ``X-Runyard-Signature: v1=<hex>`` is
the HMAC-SHA256 of ``<X-Runyard-Timestamp>.<body>`` under the secret; a
receiver recomputes it and rejects old timestamps (replays).
"""

from __future__ import annotations

import collections
import hashlib
import hmac
import logging
import time
from urllib.parse import urlsplit

import httpcore
import trio

from . import __version__
from .config import Settings
from .doorbell import Doorbell
from .errors import NotFound, StoreError
from .feed import RunFeed
from .model import Delivery, DeliveryAttempt, DeliveryState, dumps, now
from .store import Store
from .webhook_policy import AddressRefused, GuardedBackend, WebhookPolicy
from .wire import iso

log = logging.getLogger("runyard.webhooks")

SIGNATURE_HEADER = "X-Runyard-Signature"
TIMESTAMP_HEADER = "X-Runyard-Timestamp"
DELIVERY_HEADER = "X-Runyard-Delivery"  # the run id: the same on every attempt
ATTEMPT_HEADER = "X-Runyard-Attempt"
# The longest wait between two attempts, in seconds.
MAX_BACKOFF = 300.0
# Attempts under way at once, across all webhooks.
CONCURRENCY = 16
# Due rows taken per look at the outbox.
BATCH = 100
# Seconds between looks at the outbox when nothing woke the sender (rows of other processes).
CHECK_INTERVAL = 5.0
# Seconds a lease outlasts the attempt's timeout (the time to record the attempt).
LEASE_SLACK = 30.0


class WebhookStats:
    """Attempts and their outcomes since this process started (read by ``/metrics``)."""

    def __init__(self) -> None:
        self.attempts: collections.Counter[str] = collections.Counter()  # by outcome
        self.settled: collections.Counter[str] = collections.Counter()  # by final state


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The ``X-Runyard-Signature`` value of ``body`` sent at ``timestamp``."""
    signed = str(timestamp).encode() + b"." + body
    return "v1=" + hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def backoff(attempt: int, first: float) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (from 1)."""
    return float(min(MAX_BACKOFF, first * 2 ** min(attempt - 1, 32)))


class Webhooks:
    """Sends the outbox. Start with ``nursery.start(webhooks.serve)``."""

    def __init__(self, store: Store, settings: Settings, feed: RunFeed) -> None:
        self._store = store
        self._settings = settings
        self._feed = feed
        self.policy = WebhookPolicy(settings.webhook_allowed_hosts)
        self.stats = WebhookStats()
        self._doorbell = Doorbell()
        self._sending: set[str] = set()
        self._limiter = trio.CapacityLimiter(CONCURRENCY)

    async def delivery(
        self, run_id: str, *, thread_id: str | None = None, owner: str = ""
    ) -> tuple[Delivery, list[DeliveryAttempt]]:
        """A run's webhook and its attempts (they outlive the run); :class:`NotFound`."""
        found = await self._store.get_delivery(run_id)
        if found is None or found.owner != owner or thread_id not in (None, found.thread_id):
            raise NotFound(f"run {run_id} has no webhook")
        return found, await self._store.delivery_attempts(run_id)

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        pool = httpcore.AsyncConnectionPool(
            network_backend=GuardedBackend(self.policy), max_connections=CONCURRENCY
        )
        async with pool, trio.open_nursery() as nursery:
            nursery.start_soon(self._watch_feed)
            task_status.started()
            while True:
                looked = False
                try:
                    await self._send_due(nursery, pool)
                    looked = True
                except StoreError as exc:
                    log.warning("webhook.store_error", exc_info=exc)
                except Exception as exc:  # a bug: logged, and the server's runs go on
                    log.error("webhook.sender_error", exc_info=exc)
                due = self._store.next_delivery_at if looked else None
                await self._doorbell.nap(CHECK_INTERVAL, due)

    async def _watch_feed(self) -> None:
        """Wake the sender when a run with a webhook has ended (its row is committed)."""
        while True:
            async with self._feed.watch() as changes:
                async for run in changes:
                    if run.status.terminal and run.kwargs.get("webhook"):
                        self._doorbell.ring()
            # Dropped for falling behind, or closed at shutdown: the timer covers the gap.
            self._doorbell.ring()
            await trio.sleep(CHECK_INTERVAL)

    async def _send_due(self, nursery: trio.Nursery, pool: httpcore.AsyncConnectionPool) -> None:
        ts = now()
        lease = ts + self._settings.webhook_timeout + LEASE_SLACK
        for row in await self._store.due_deliveries(ts, BATCH):
            if row.run_id in self._sending:
                continue
            if await self._store.lease_delivery(row.run_id, row.next_attempt_at, lease, ts):
                self._sending.add(row.run_id)
                nursery.start_soon(self._attempt, pool, row)

    async def _attempt(self, pool: httpcore.AsyncConnectionPool, row: Delivery) -> None:
        """One attempt; cancelled (shutdown), it records nothing and its lease runs out."""
        try:
            async with self._limiter:
                number = row.attempts + 1
                began, clock = now(), time.perf_counter()
                outcome, status = await self._post(pool, row, number)
                seconds = time.perf_counter() - clock
                state, due = self._after(row, outcome, number, began)
                attempt = DeliveryAttempt(row.run_id, number, began, outcome, status, seconds)
                self.stats.attempts[outcome] += 1
                if state is not DeliveryState.PENDING:
                    self.stats.settled[str(state)] += 1
                log.log(
                    logging.INFO if outcome == "delivered" else logging.WARNING,
                    "webhook.attempt",
                    extra={
                        "run_id": row.run_id,
                        "attempt": number,
                        "host": urlsplit(row.url).hostname,
                        "outcome": outcome,
                        "status": status,
                        "state": str(state),
                        "ms": round(seconds * 1000, 1),
                    },
                )
                await self._store.record_attempt(attempt, state, due)
        except StoreError as exc:  # not recorded: the lease runs out and it is sent again
            log.error("webhook.record_failed", exc_info=exc, extra={"run_id": row.run_id})
        finally:
            self._sending.discard(row.run_id)
            self._doorbell.ring()

    def _after(
        self, row: Delivery, outcome: str, number: int, began: float
    ) -> tuple[DeliveryState, float]:
        """The state after an attempt, and when the next one is due."""
        if outcome == "delivered":
            return DeliveryState.DELIVERED, began
        if outcome == "refused":
            return DeliveryState.REFUSED, began
        due = began + backoff(number, self._settings.webhook_backoff)
        if due > row.created_at + self._settings.webhook_retry_for:
            return DeliveryState.FAILED, began
        return DeliveryState.PENDING, due

    async def _post(
        self, pool: httpcore.AsyncConnectionPool, row: Delivery, number: int
    ) -> tuple[str, int | None]:
        """POST the body once: (outcome, status code)."""
        body = dumps({**row.body, "webhook_sent_at": iso(now())}).encode()
        headers = [
            ("Content-Type", "application/json"),
            ("User-Agent", f"runyard/{__version__}"),
            (DELIVERY_HEADER, row.run_id),
            (ATTEMPT_HEADER, str(number)),
        ]
        secret = self._settings.webhook_secret
        if secret:
            stamp = int(time.time())
            headers += [
                (TIMESTAMP_HEADER, str(stamp)),
                (SIGNATURE_HEADER, signature(secret, stamp, body)),
            ]
        timeout = self._settings.webhook_timeout
        limits = {"connect": timeout, "read": timeout, "write": timeout, "pool": timeout}
        with trio.move_on_after(timeout):
            try:
                async with pool.stream(
                    "POST", row.url, headers=headers, content=body, extensions={"timeout": limits}
                ) as response:
                    status = response.status
            except AddressRefused:
                return "refused", None
            except httpcore.TimeoutException:
                return "timeout", None
            except (httpcore.NetworkError, httpcore.ProtocolError, httpcore.UnsupportedProtocol):
                return "unreachable", None
            except Exception as exc:  # a bug, not the receiver's doing: logged, tried again
                log.error("webhook.attempt_error", exc_info=exc, extra={"run_id": row.run_id})
                return "error", None
            return ("delivered" if 200 <= status < 300 else "rejected"), status
        return "timeout", None
