"""The webhook outbox: each run's webhook, written with its final state, and its attempts.

A row is added by the transaction that writes the run's final state
(:func:`add`, called by ``queries``), so a run that ended has its webhook on
disk whatever happens next. The delivery loop (:mod:`runyard.webhooks`)
leases a due row before each attempt (:meth:`OutboxStore.lease_delivery`, a
compare-and-set on its due time that also counts the attempt): one sender at
a time, and a sender that dies leaves a row that falls due again when its
lease runs out. Rows outlive their runs (a thread-less run may be deleted as
soon as it ends); finished ones go with the purge of old runs.
"""

from __future__ import annotations

import sqlite3
from typing import Protocol

from ..model import Delivery, DeliveryAttempt, DeliveryState
from .connection import SQLiteBase
from .schema import WEBHOOK_ATTEMPTS, WEBHOOKS


class OutboxStore(Protocol):
    """Webhooks due, their leases, and the attempts made."""

    async def due_deliveries(self, now: float, limit: int) -> list[Delivery]:
        """Pending webhooks due at ``now`` or earlier, the longest due first."""

    async def next_delivery_at(self) -> float | None:
        """When the soonest pending webhook falls due."""

    async def lease_delivery(self, run_id: str, due: float, until: float, at: float) -> bool:
        """Count an attempt and hold the row until ``until``, if it is still due at ``due``;
        whether this call did it."""

    async def record_attempt(
        self, attempt: DeliveryAttempt, state: DeliveryState, next_attempt_at: float
    ) -> None:
        """Log an attempt and set the webhook's state and next due time, together."""

    async def get_delivery(self, run_id: str) -> Delivery | None: ...
    async def delivery_attempts(self, run_id: str) -> list[DeliveryAttempt]: ...


_ADD = WEBHOOKS.insert("INSERT OR IGNORE")  # a run's final state is written once
_GET = WEBHOOKS.select("WHERE run_id = ?")
_DUE = WEBHOOKS.select(
    "WHERE state = 'pending' AND next_attempt_at <= ? ORDER BY next_attempt_at LIMIT ?"
)
_NEXT = "SELECT min(next_attempt_at) FROM webhooks WHERE state = 'pending'"
_LEASE = (
    "UPDATE webhooks SET next_attempt_at = ?, attempts = attempts + 1, updated_at = ?"
    " WHERE run_id = ? AND state = 'pending' AND next_attempt_at = ?"
)
_SETTLE = WEBHOOKS.update("state", "next_attempt_at", "updated_at")
_ADD_ATTEMPT = WEBHOOK_ATTEMPTS.insert("INSERT OR REPLACE")
_ATTEMPTS = WEBHOOK_ATTEMPTS.select("WHERE run_id = ? ORDER BY attempt")


def add(c: sqlite3.Connection, delivery: Delivery) -> None:
    """Put a run's webhook in the outbox (in its final state's transaction)."""
    c.execute(_ADD, WEBHOOKS.row(delivery))


def purge_some(c: sqlite3.Connection, before: float) -> None:
    """Forget webhooks settled before ``before``, with their attempts."""
    settled = "SELECT run_id FROM webhooks WHERE state != 'pending' AND updated_at < ?"
    c.execute(f"DELETE FROM webhook_attempts WHERE run_id IN ({settled})", (before,))
    c.execute("DELETE FROM webhooks WHERE state != 'pending' AND updated_at < ?", (before,))


class SQLiteOutbox(SQLiteBase):
    """The :class:`OutboxStore` part of :class:`~runyard.store.SQLiteStore`."""

    async def due_deliveries(self, now: float, limit: int) -> list[Delivery]:
        return await self._read(
            lambda db: [WEBHOOKS.load(row) for row in db.execute(_DUE, (now, limit))]
        )

    async def next_delivery_at(self) -> float | None:
        def soonest(db: sqlite3.Connection) -> float | None:
            (found,) = db.execute(_NEXT).fetchone()
            return None if found is None else float(found)

        return await self._read(soonest)

    async def lease_delivery(self, run_id: str, due: float, until: float, at: float) -> bool:
        args = (until, at, run_id, due)
        return await self._write(lambda c: c.execute(_LEASE, args).rowcount == 1)

    async def record_attempt(
        self, attempt: DeliveryAttempt, state: DeliveryState, next_attempt_at: float
    ) -> None:
        def record(c: sqlite3.Connection) -> None:
            c.execute(_ADD_ATTEMPT, WEBHOOK_ATTEMPTS.row(attempt))
            c.execute(
                _SETTLE,
                WEBHOOKS.values(
                    run_id=attempt.run_id,
                    state=state,
                    next_attempt_at=next_attempt_at,
                    updated_at=attempt.at + attempt.seconds,
                ),
            )

        await self._write(record)

    async def get_delivery(self, run_id: str) -> Delivery | None:
        def get(db: sqlite3.Connection) -> Delivery | None:
            row = db.execute(_GET, (run_id,)).fetchone()
            return None if row is None else WEBHOOKS.load(row)

        return await self._read(get)

    async def delivery_attempts(self, run_id: str) -> list[DeliveryAttempt]:
        return await self._read(
            lambda db: [WEBHOOK_ATTEMPTS.load(row) for row in db.execute(_ATTEMPTS, (run_id,))]
        )
