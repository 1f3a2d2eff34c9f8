"""The webhook outbox: each run's webhook, written with its final state, and its attempts.

A row is added by the transaction that writes the run's final state
(:meth:`OutboxSql.put`, called by ``queries``), so a run that ended has its webhook on
disk whatever happens next. The delivery loop (:mod:`runyard.webhooks`)
leases a due row before each attempt (:meth:`OutboxStore.lease_delivery`, a
compare-and-set on its due time that also counts the attempt): one sender at
a time, and a sender that dies leaves a row that falls due again when its
lease runs out. Rows outlive their runs (a thread-less run may be deleted as
soon as it ends); finished ones go with the purge of old runs.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Protocol

from ..model import Delivery, DeliveryAttempt, DeliveryState
from .connection import SQLiteBase
from .interface import OnSQL
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


@dataclasses.dataclass(frozen=True)
class OutboxSql:
    """The outbox's statements in one database's dialect: its placeholder ``mark``, the
    INSERT of a webhook (left alone if the run has one: a final state is written once),
    of an attempt (replacing one of the same number) and the UPDATE that settles one."""

    mark: str
    add: str
    add_attempt: str
    settle: str

    def put(self, c: Any, delivery: Delivery) -> None:
        """Put a run's webhook in the outbox (in its final state's transaction)."""
        c.execute(self.add, WEBHOOKS.row(delivery))

    def purge_some(self, c: Any, before: float) -> None:
        """Forget webhooks settled before ``before``, with their attempts."""
        settled = f"state != 'pending' AND updated_at < {self.mark}"
        picked = f"SELECT run_id FROM webhooks WHERE {settled}"
        c.execute(f"DELETE FROM webhook_attempts WHERE run_id IN ({picked})", (before,))
        c.execute(f"DELETE FROM webhooks WHERE {settled}", (before,))


SQLITE_OUTBOX = OutboxSql(
    "?",
    WEBHOOKS.insert("INSERT OR IGNORE"),
    WEBHOOK_ATTEMPTS.insert("INSERT OR REPLACE"),
    WEBHOOKS.update("state", "next_attempt_at", "updated_at"),
)
_NEXT = "SELECT min(next_attempt_at) FROM webhooks WHERE state = 'pending'"


class OutboxOnSQL(OnSQL):
    """The :class:`OutboxStore`, for a store whose ``_read``/``_write`` run SQL of ``_outbox``."""

    _outbox: OutboxSql

    async def due_deliveries(self, now: float, limit: int) -> list[Delivery]:
        m = self._outbox.mark
        query = WEBHOOKS.select(
            f"WHERE state = 'pending' AND next_attempt_at <= {m} ORDER BY next_attempt_at LIMIT {m}"
        )
        return await self._read(
            lambda db: [WEBHOOKS.load(row) for row in db.execute(query, (now, limit))]
        )

    async def next_delivery_at(self) -> float | None:
        def soonest(db: Any) -> float | None:
            row = db.execute(_NEXT).fetchone()
            return None if row is None or row[0] is None else float(row[0])

        return await self._read(soonest)

    async def lease_delivery(self, run_id: str, due: float, until: float, at: float) -> bool:
        m = self._outbox.mark
        lease = (
            f"UPDATE webhooks SET next_attempt_at = {m}, attempts = attempts + 1,"
            f" updated_at = {m} WHERE run_id = {m} AND state = 'pending' AND next_attempt_at = {m}"
        )
        args = (until, at, run_id, due)
        return await self._write(lambda c: bool(c.execute(lease, args).rowcount == 1))

    async def record_attempt(
        self, attempt: DeliveryAttempt, state: DeliveryState, next_attempt_at: float
    ) -> None:
        sql = self._outbox

        def record(c: Any) -> None:
            c.execute(sql.add_attempt, WEBHOOK_ATTEMPTS.row(attempt))
            c.execute(
                sql.settle,
                WEBHOOKS.values(
                    run_id=attempt.run_id,
                    state=state,
                    next_attempt_at=next_attempt_at,
                    updated_at=attempt.at + attempt.seconds,
                ),
            )

        await self._write(record)

    async def get_delivery(self, run_id: str) -> Delivery | None:
        query = WEBHOOKS.select(f"WHERE run_id = {self._outbox.mark}")

        def get(db: Any) -> Delivery | None:
            row = db.execute(query, (run_id,)).fetchone()
            return None if row is None else WEBHOOKS.load(row)

        return await self._read(get)

    async def delivery_attempts(self, run_id: str) -> list[DeliveryAttempt]:
        query = WEBHOOK_ATTEMPTS.select(f"WHERE run_id = {self._outbox.mark} ORDER BY attempt")
        return await self._read(
            lambda db: [WEBHOOK_ATTEMPTS.load(row) for row in db.execute(query, (run_id,))]
        )


class SQLiteOutbox(SQLiteBase, OutboxOnSQL):
    """The :class:`OutboxStore` part of :class:`~runyard.store.SQLiteStore`."""

    _outbox = SQLITE_OUTBOX
