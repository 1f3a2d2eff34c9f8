"""The webhook outbox in a PostgreSQL store: the :class:`~.outbox.OutboxStore` part.

The same rows and leases as :mod:`.outbox`: a run's webhook is added by the
transaction that writes its final state (:func:`add`), and a sender leases a
due row with a compare-and-set on its due time before each attempt, so one
sender (of one replica) makes it.
"""

from __future__ import annotations

from ..model import Delivery, DeliveryAttempt, DeliveryState
from .pg_connection import PostgresBase
from .pg_schema import Conn, insert, update
from .schema import WEBHOOK_ATTEMPTS, WEBHOOKS

_ADD = insert(WEBHOOKS, "ignore")  # a run's final state is written once
_GET = WEBHOOKS.select("WHERE run_id = %s")
_DUE = WEBHOOKS.select(
    "WHERE state = 'pending' AND next_attempt_at <= %s ORDER BY next_attempt_at LIMIT %s"
)
_NEXT = "SELECT min(next_attempt_at) FROM webhooks WHERE state = 'pending'"
_LEASE = (
    "UPDATE webhooks SET next_attempt_at = %s, attempts = attempts + 1, updated_at = %s"
    " WHERE run_id = %s AND state = 'pending' AND next_attempt_at = %s"
)
_SETTLE = update(WEBHOOKS, "state", "next_attempt_at", "updated_at")
_ADD_ATTEMPT = insert(WEBHOOK_ATTEMPTS, "replace")
_ATTEMPTS = WEBHOOK_ATTEMPTS.select("WHERE run_id = %s ORDER BY attempt")
_SETTLED = "SELECT run_id FROM webhooks WHERE state != 'pending' AND updated_at < %s"


def add(c: Conn, delivery: Delivery) -> None:
    """Put a run's webhook in the outbox (in its final state's transaction)."""
    c.execute(_ADD, WEBHOOKS.row(delivery))


def purge_some(c: Conn, before: float) -> None:
    """Forget webhooks settled before ``before``, with their attempts."""
    c.execute(f"DELETE FROM webhook_attempts WHERE run_id IN ({_SETTLED})", (before,))
    c.execute("DELETE FROM webhooks WHERE state != 'pending' AND updated_at < %s", (before,))


class PostgresOutbox(PostgresBase):
    """The :class:`~.outbox.OutboxStore` part of a PostgreSQL store."""

    async def due_deliveries(self, now: float, limit: int) -> list[Delivery]:
        return await self._read(
            lambda db: [WEBHOOKS.load(row) for row in db.execute(_DUE, (now, limit))]
        )

    async def next_delivery_at(self) -> float | None:
        def soonest(db: Conn) -> float | None:
            row = db.execute(_NEXT).fetchone()
            return None if row is None or row[0] is None else float(row[0])

        return await self._read(soonest)

    async def lease_delivery(self, run_id: str, due: float, until: float, at: float) -> bool:
        args = (until, at, run_id, due)
        return await self._write(lambda c: c.execute(_LEASE, args).rowcount == 1)

    async def record_attempt(
        self, attempt: DeliveryAttempt, state: DeliveryState, next_attempt_at: float
    ) -> None:
        def record(c: Conn) -> None:
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
        def get(db: Conn) -> Delivery | None:
            row = db.execute(_GET, (run_id,)).fetchone()
            return None if row is None else WEBHOOKS.load(row)

        return await self._read(get)

    async def delivery_attempts(self, run_id: str) -> list[DeliveryAttempt]:
        return await self._read(
            lambda db: [WEBHOOK_ATTEMPTS.load(row) for row in db.execute(_ATTEMPTS, (run_id,))]
        )
