"""The webhook outbox in a PostgreSQL store: the :class:`~.outbox.OutboxStore` part.

The same rows and leases as :mod:`.outbox`: a run's webhook is added by the
transaction that writes its final state (:meth:`~.outbox.OutboxSql.put`), and a sender leases a
due row with a compare-and-set on its due time before each attempt, so one
sender (of one replica) makes it.
"""

from __future__ import annotations

from .outbox import OutboxOnSQL, OutboxSql
from .pg_connection import PostgresBase
from .pg_schema import insert, update
from .schema import WEBHOOK_ATTEMPTS, WEBHOOKS

PG_OUTBOX = OutboxSql(
    "%s",
    insert(WEBHOOKS, "ignore"),
    insert(WEBHOOK_ATTEMPTS, "replace"),
    update(WEBHOOKS, "state", "next_attempt_at", "updated_at"),
)


class PostgresOutbox(PostgresBase, OutboxOnSQL):
    """The :class:`~.outbox.OutboxStore` part of a PostgreSQL store."""

    _outbox = PG_OUTBOX
