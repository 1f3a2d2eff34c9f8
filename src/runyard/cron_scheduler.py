"""The cron scheduler: each time of each cron starts exactly one run.

One task in the supervisor's runs nursery looks for due crons (when the
soonest falls due, when a cron changes, and at least every
``cron_check_interval`` seconds, for crons another process changed) and fires
each in two steps, both in the database (see :mod:`runyard.store.crons`):
it claims the time (a compare-and-set that also moves the cron to its next
time: one winner among any number of schedulers), then creates the run,
whose row clears the claim in the same transaction. So a time fires once
whether this process restarts, crashes or runs beside others:

- killed before the claim: the time is still due, and fires at the next start;
- killed between the claim and the run's row: the claim stays, and is taken
  over (another compare-and-set) once it is :data:`STALE_CLAIM` seconds old;
- killed after: the run is in the store and recovery starts it like any other.

Times missed while no scheduler ran (the server was down, or busy) are not
caught up one by one: a cron fires once for all of them, and its next time is
the first one after now. A run the supervisor refuses (its thread was
deleted, a ``reject`` cron whose last run is still going, a limit) skips
that time: logged and counted, never retried.

Cancellation (shutdown): a claim whose run was not written yet stays, and
is taken over by the next start.
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from .crons import next_run_at, request_of
from .doorbell import Doorbell
from .errors import RunyardError, ShuttingDown, StoreError
from .model import Cron, RunRequest, new_id, now
from .store import Store

log = logging.getLogger("runyard.crons")

# Seconds after which a claim whose run was never written is taken over: its scheduler
# died (a live one writes the run within one commit, the store's busy bound included).
STALE_CLAIM = 30.0
# Due crons fired per look at the store; the rest at the next look, at once.
BATCH = 100


class CronStats:
    """Times fired and skipped since this process started (read by ``/metrics``)."""

    def __init__(self) -> None:
        self.fired = 0
        self.skipped: collections.Counter[str] = collections.Counter()  # by error type


class CronScheduler:
    """Fires due crons. Start with ``nursery.start(scheduler.serve)``."""

    def __init__(
        self,
        store: Store,
        create_run: Callable[[RunRequest], Awaitable[Any]],
        accepting: Callable[[], bool],
        *,
        interval: float,
    ) -> None:
        self._store = store
        self._create_run = create_run
        self._accepting = accepting
        self._interval = interval
        self._doorbell = Doorbell()
        self.stats = CronStats()

    def wake(self) -> None:
        """Look again now: a cron was created or changed."""
        self._doorbell.ring()

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            looked = False
            if self._accepting():
                try:
                    await self._retake_stale()
                    while await self._fire_due() == BATCH:
                        pass
                    looked = True
                except StoreError as exc:  # the store is busy or failing: try again later
                    log.warning("cron.store_error", exc_info=exc)
                except Exception as exc:  # a bug: logged, and the server's runs go on
                    log.error("cron.scheduler_error", exc_info=exc)
            # Until a cron changes, the interval passes or (unless draining or after a store
            # error: no busy loop) the soonest cron falls due.
            due = self._store.next_cron_at if looked else None
            await self._doorbell.nap(self._interval, due)

    async def _fire_due(self) -> int:
        """Fire every due cron of one batch; how many were due."""
        ts = now()
        due = await self._store.due_crons(ts, BATCH)
        for cron in due:
            assert cron.next_run_at is not None
            # One run for however many times were missed; the next is after now.
            following = next_run_at(cron, max(cron.next_run_at, ts))
            claim = new_id()
            if await self._store.claim_cron(cron.cron_id, cron.next_run_at, following, claim, ts):
                await self._start(cron, claim)
        return len(due)

    async def _retake_stale(self) -> None:
        ts = now()
        for cron in await self._store.stale_claims(ts - STALE_CLAIM):
            assert cron.claim is not None
            claim = new_id()
            if await self._store.retake_claim(cron.cron_id, cron.claim, claim, ts):
                log.info("cron.claim_retaken", extra={"cron_id": cron.cron_id})
                await self._start(cron, claim)

    async def _start(self, cron: Cron, claim: str) -> None:
        """Create the run of a claimed time; a refused run skips the time."""
        try:
            handle = await self._create_run(request_of(cron, claim))
        except (ShuttingDown, StoreError):
            return  # the claim stays: taken over once stale, by this process or the next
        except RunyardError as exc:
            await self._store.release_claim(cron.cron_id, claim)
            self.stats.skipped[type(exc).__name__] += 1
            log.warning(
                "cron.skipped",
                extra={"cron_id": cron.cron_id, "reason": type(exc).__name__, "detail": exc.detail},
            )
            return
        self.stats.fired += 1
        log.info("cron.fired", extra={"cron_id": cron.cron_id, "run_id": handle.run_id})
