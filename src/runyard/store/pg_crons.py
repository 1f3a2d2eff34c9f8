"""Crons in a PostgreSQL store: the :class:`~.crons.CronStore` part, and the claims.

The same two steps as :mod:`.crons`: a compare-and-set on ``next_run_at``
claims a due time (of any number of schedulers, replicas included, one wins:
PostgreSQL re-checks an UPDATE's condition on the row it waited for), and the
transaction that writes the run's row clears the claim (:func:`fired`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from ..model import JSON, Cron, Run
from .assistants import contains
from .crons import _COLUMN, CLAIM_KEY, SORTABLE, _page
from .pg_connection import PostgresBase, scan
from .pg_schema import Conn, insert, order
from .schema import CRONS

_ADD = insert(CRONS)
_REPLACE = insert(CRONS, "replace")
_GET = CRONS.select("WHERE cron_id = %s")
_LOCK = _GET + " FOR UPDATE"
_DUE_WHERE = "enabled = 1 AND claim IS NULL AND next_run_at IS NOT NULL"
_DUE = CRONS.select(f"WHERE {_DUE_WHERE} AND next_run_at <= %s ORDER BY next_run_at LIMIT %s")
_NEXT = f"SELECT min(next_run_at) FROM crons WHERE {_DUE_WHERE}"
_CLAIM = (
    "UPDATE crons SET next_run_at = %s, claim = %s, claimed_at = %s"
    f" WHERE cron_id = %s AND next_run_at = %s AND {_DUE_WHERE}"
)
_STALE = CRONS.select("WHERE claim IS NOT NULL AND claimed_at < %s ORDER BY claimed_at")
_RETAKE = "UPDATE crons SET claim = %s, claimed_at = %s WHERE cron_id = %s AND claim = %s"
_RELEASE = "UPDATE crons SET claim = NULL, claimed_at = NULL WHERE cron_id = %s AND claim = %s"


def fired(c: Conn, runs: list[Run]) -> None:
    """Clear the claims of cron-fired runs, in the transaction that writes their rows."""
    claims = [
        (run.metadata["cron_id"], run.kwargs[CLAIM_KEY])
        for run in runs
        if CLAIM_KEY in run.kwargs and "cron_id" in run.metadata
    ]
    if claims:
        c.cursor().executemany(_RELEASE, claims)


def delete_for_thread(c: Conn, thread_id: str) -> None:
    """A thread's crons go with it."""
    c.execute("DELETE FROM crons WHERE thread_id = %s", (thread_id,))


def _get(db: Conn, cron_id: str, owner: str | None = None, *, lock: bool = False) -> Cron | None:
    row = db.execute(_LOCK if lock else _GET, (cron_id,)).fetchone()
    cron = None if row is None else CRONS.load(row)
    return None if cron is None or owner not in (None, cron.owner) else cron


def _change(c: Conn, cron_id: str, owner: str, change: Callable[[Cron], Cron]) -> Cron | None:
    current = _get(c, cron_id, owner, lock=True)
    if current is None:
        return None
    changed = change(current)
    c.execute(_REPLACE, CRONS.row(changed))
    return changed


def _matching(
    db: Conn,
    owner: str,
    assistant_id: str | None,
    thread_id: str | None,
    enabled: bool | None,
    metadata: dict[str, JSON],
    order_by: str = "",
) -> Iterator[Cron]:
    where: list[str] = ["owner = %s"]
    args: list[Any] = [owner]
    for column, value in (("assistant_id", assistant_id), ("thread_id", thread_id)):
        if value is not None:
            where.append(f"{column} = %s")
            args.append(value)
    if enabled is not None:
        where.append("enabled = %s")
        args.append(int(enabled))
    with scan(db, CRONS.select(f"WHERE {' AND '.join(where)} {order_by}"), args) as rows:
        for row in rows:
            cron = CRONS.load(row)
            if contains(cron.metadata, metadata):
                yield cron


def _order(sort_by: str, descending: bool) -> str:
    assert sort_by in SORTABLE
    column = f'"{_COLUMN.get(sort_by, sort_by)}"'
    tie = order("cron_id", descending=descending)
    return f"ORDER BY {order(column, descending=descending)}, {tie}"


class PostgresCrons(PostgresBase):
    """The :class:`~.crons.CronStore` part of a PostgreSQL store."""

    async def put_cron(self, cron: Cron) -> None:
        await self._write(lambda c: c.execute(_ADD, CRONS.row(cron)))

    async def get_cron(self, cron_id: str) -> Cron | None:
        return await self._read(lambda db: _get(db, cron_id))

    async def change_cron(
        self, cron_id: str, owner: str, change: Callable[[Cron], Cron]
    ) -> Cron | None:
        return await self._write(lambda c: _change(c, cron_id, owner, change))

    async def delete_cron(self, cron_id: str, owner: str) -> bool:
        sql = "DELETE FROM crons WHERE cron_id = %s AND owner = %s"
        return await self._write(lambda c: c.execute(sql, (cron_id, owner)).rowcount > 0)

    async def search_crons(
        self,
        *,
        owner: str,
        assistant_id: str | None,
        thread_id: str | None,
        enabled: bool | None,
        metadata: dict[str, JSON],
        sort_by: str,
        descending: bool,
        limit: int,
        offset: int,
    ) -> list[Cron]:
        order_by = _order(sort_by, descending)
        return await self._read(
            lambda db: _page(
                _matching(db, owner, assistant_id, thread_id, enabled, metadata, order_by),
                limit,
                offset,
            )
        )

    async def count_crons(
        self,
        *,
        owner: str,
        assistant_id: str | None,
        thread_id: str | None,
        metadata: dict[str, JSON],
    ) -> int:
        return await self._read(
            lambda db: sum(1 for _ in _matching(db, owner, assistant_id, thread_id, None, metadata))
        )

    async def due_crons(self, now: float, limit: int) -> list[Cron]:
        return await self._read(
            lambda db: [CRONS.load(row) for row in db.execute(_DUE, (now, limit))]
        )

    async def next_cron_at(self) -> float | None:
        def soonest(db: Conn) -> float | None:
            row = db.execute(_NEXT).fetchone()
            return None if row is None or row[0] is None else float(row[0])

        return await self._read(soonest)

    async def claim_cron(
        self, cron_id: str, due: float, next_at: float | None, token: str, at: float
    ) -> bool:
        args = (next_at, token, at, cron_id, due)
        return await self._write(lambda c: c.execute(_CLAIM, args).rowcount == 1)

    async def stale_claims(self, before: float) -> list[Cron]:
        return await self._read(
            lambda db: [CRONS.load(row) for row in db.execute(_STALE, (before,))]
        )

    async def retake_claim(self, cron_id: str, token: str, new_token: str, at: float) -> bool:
        args = (new_token, at, cron_id, token)
        return await self._write(lambda c: c.execute(_RETAKE, args).rowcount == 1)

    async def release_claim(self, cron_id: str, token: str) -> None:
        await self._write(lambda c: c.execute(_RELEASE, (cron_id, token)))
