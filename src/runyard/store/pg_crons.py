"""Crons in a PostgreSQL store: the :class:`~.crons.CronStore` part, and the claims.

The same two steps as :mod:`.crons`: a compare-and-set on ``next_run_at``
claims a due time (of any number of schedulers, replicas included, one wins:
PostgreSQL re-checks an UPDATE's condition on the row it waited for), and the
transaction that writes the run's row clears the claim
(:meth:`~.crons.CronSql.fired`). A change locks the cron's row before it reads it.
"""

from __future__ import annotations

from .crons import CronsOnSQL, CronSql
from .pg_connection import PostgresBase, scan
from .pg_schema import insert, order
from .schema import CRONS

PG_CRONS = CronSql(
    mark="%s",
    add=insert(CRONS),
    replace=insert(CRONS, "replace"),
    lock=" FOR UPDATE",
    scan=scan,
    order=order,
)


class PostgresCrons(PostgresBase, CronsOnSQL):
    """The :class:`~.crons.CronStore` part of a PostgreSQL store."""

    _crons = PG_CRONS
