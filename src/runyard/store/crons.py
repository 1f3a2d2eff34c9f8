"""Crons in the store, and the claims that make each of their times fire once.

The scheduler (:mod:`runyard.cron_scheduler`) fires a due cron in two steps:

1. :meth:`CronStore.claim_cron` moves ``next_run_at`` from the due time to the
   next one and records a claim token, in one compare-and-set: of any number
   of schedulers (replicas, or a restarted process) exactly one wins a time.
2. The run it then creates carries the token in its kwargs
   (:data:`CLAIM_KEY`), and the transaction that writes the run's row clears
   the claim (:meth:`CronSql.fired`, called by ``queries.commit``).

A claim still set is therefore a time whose run was never written: the
process died between the two steps, or the run was refused. The scheduler
takes over such claims (:meth:`CronStore.retake_claim`, again a
compare-and-set) and fires them; nothing else fires a time twice.

Both stores run the same code (:class:`CronsOnSQL`); what their statements
write differently is a :class:`CronSql`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from ..model import JSON, Cron, Run
from .assistants import Order, contains, sqlite_order
from .connection import SQLiteBase, closing_scan
from .interface import OnSQL, Scan, page_of
from .schema import CRONS

# The key of a cron-fired run's kwargs that holds the claim its row clears.
CLAIM_KEY = "cron_claim"
# The fields a search may be sorted by (LangGraph's ``sort_by``).
SORTABLE = (
    "cron_id", "assistant_id", "thread_id", "created_at", "updated_at", "next_run_date",
    "end_time",
)  # fmt: skip
# LangGraph names a cron's next time next_run_date.
_COLUMN = {"next_run_date": "next_run_at"}


class CronStore(Protocol):
    """Crons: their rows, the due ones, and the claims on their times."""

    async def put_cron(self, cron: Cron) -> None: ...
    async def get_cron(self, cron_id: str) -> Cron | None: ...
    async def change_cron(
        self, cron_id: str, owner: str, change: Callable[[Cron], Cron]
    ) -> Cron | None:
        """Replace the owner's cron by ``change(cron)`` in one transaction; None if none."""

    async def delete_cron(self, cron_id: str, owner: str) -> bool: ...
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
    ) -> list[Cron]: ...
    async def count_crons(
        self,
        *,
        owner: str,
        assistant_id: str | None,
        thread_id: str | None,
        metadata: dict[str, JSON],
    ) -> int: ...

    async def due_crons(self, now: float, limit: int) -> list[Cron]:
        """Enabled, unclaimed crons whose next time is ``now`` or earlier, soonest first."""

    async def next_cron_at(self) -> float | None:
        """The soonest next time of an enabled, unclaimed cron."""

    async def claim_cron(
        self, cron_id: str, due: float, next_at: float | None, token: str, at: float
    ) -> bool:
        """Move the cron from ``due`` to ``next_at`` and claim it with ``token``, if it is
        still due at ``due`` and unclaimed; whether this call did it."""

    async def stale_claims(self, before: float) -> list[Cron]:
        """Crons claimed before ``before`` whose run was never written."""

    async def retake_claim(self, cron_id: str, token: str, new_token: str, at: float) -> bool:
        """Take over the claim ``token`` with ``new_token``, if it is still that one."""

    async def release_claim(self, cron_id: str, token: str) -> None:
        """Drop the claim ``token``: its time was skipped (its run was refused)."""


_DUE = "enabled = 1 AND claim IS NULL AND next_run_at IS NOT NULL"
_NEXT = f"SELECT min(next_run_at) FROM crons WHERE {_DUE}"


@dataclasses.dataclass(frozen=True)
class CronSql:
    """The crons' statements in one database's dialect: its placeholder ``mark``, the
    INSERT of a new cron and the one that replaces a cron, what holds a row read for a
    change (``lock``), how it streams a search's rows (:data:`~.interface.Scan`) and sorts."""

    mark: str
    add: str
    replace: str
    lock: str
    scan: Scan
    order: Order

    @property
    def release(self) -> str:
        m = self.mark
        return (
            f"UPDATE crons SET claim = NULL, claimed_at = NULL WHERE cron_id = {m} AND claim = {m}"
        )

    def fired(self, c: Any, runs: list[Run]) -> None:
        """Clear the claims of cron-fired runs, in the transaction that writes their rows."""
        claims = [
            (run.metadata["cron_id"], run.kwargs[CLAIM_KEY])
            for run in runs
            if CLAIM_KEY in run.kwargs and "cron_id" in run.metadata
        ]
        if claims:
            c.cursor().executemany(self.release, claims)

    def delete_for_thread(self, c: Any, thread_id: str) -> None:
        """A thread's crons go with it."""
        c.execute(f"DELETE FROM crons WHERE thread_id = {self.mark}", (thread_id,))


SQLITE_CRONS = CronSql(
    mark="?",
    add=CRONS.insert(),
    replace=CRONS.insert("INSERT OR REPLACE"),
    lock="",
    scan=closing_scan,
    order=sqlite_order,
)


def _get(
    sql: CronSql, db: Any, cron_id: str, owner: str | None = None, *, lock: bool = False
) -> Cron | None:
    query = CRONS.select(f"WHERE cron_id = {sql.mark}" + (sql.lock if lock else ""))
    row = db.execute(query, (cron_id,)).fetchone()
    cron = None if row is None else CRONS.load(row)
    return None if cron is None or owner not in (None, cron.owner) else cron


def _change(
    sql: CronSql, c: Any, cron_id: str, owner: str, change: Callable[[Cron], Cron]
) -> Cron | None:
    current = _get(sql, c, cron_id, owner, lock=True)
    if current is None:
        return None
    changed = change(current)
    c.execute(sql.replace, CRONS.row(changed))
    return changed


def _matching(
    sql: CronSql,
    db: Any,
    owner: str,
    assistant_id: str | None,
    thread_id: str | None,
    enabled: bool | None,
    metadata: dict[str, JSON],
    order_by: str = "",
) -> Iterator[Cron]:
    where: list[str] = [f"owner = {sql.mark}"]
    args: list[Any] = [owner]
    for column, value in (("assistant_id", assistant_id), ("thread_id", thread_id)):
        if value is not None:
            where.append(f"{column} = {sql.mark}")
            args.append(value)
    if enabled is not None:
        where.append(f"enabled = {sql.mark}")
        args.append(int(enabled))
    with sql.scan(db, CRONS.select(f"WHERE {' AND '.join(where)} {order_by}"), args) as rows:
        for row in rows:
            cron = CRONS.load(row)
            if contains(cron.metadata, metadata):
                yield cron


def _order(sql: CronSql, sort_by: str, descending: bool) -> str:
    assert sort_by in SORTABLE
    column = f'"{_COLUMN.get(sort_by, sort_by)}"'
    tie = sql.order("cron_id", descending=descending)
    return f"ORDER BY {sql.order(column, descending=descending)}, {tie}"


class CronsOnSQL(OnSQL):
    """The :class:`CronStore`, for a store whose ``_read``/``_write`` run SQL of ``_crons``."""

    _crons: CronSql

    async def put_cron(self, cron: Cron) -> None:
        add = self._crons.add
        await self._write(lambda c: c.execute(add, CRONS.row(cron)))

    async def get_cron(self, cron_id: str) -> Cron | None:
        return await self._read(lambda db: _get(self._crons, db, cron_id))

    async def change_cron(
        self, cron_id: str, owner: str, change: Callable[[Cron], Cron]
    ) -> Cron | None:
        return await self._write(lambda c: _change(self._crons, c, cron_id, owner, change))

    async def delete_cron(self, cron_id: str, owner: str) -> bool:
        m = self._crons.mark
        query = f"DELETE FROM crons WHERE cron_id = {m} AND owner = {m}"
        return await self._write(lambda c: bool(c.execute(query, (cron_id, owner)).rowcount > 0))

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
        sql = self._crons
        order_by = _order(sql, sort_by, descending)
        return await self._read(
            lambda db: page_of(
                _matching(sql, db, owner, assistant_id, thread_id, enabled, metadata, order_by),
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
        sql = self._crons
        return await self._read(
            lambda db: sum(
                1 for _ in _matching(sql, db, owner, assistant_id, thread_id, None, metadata)
            )
        )

    async def due_crons(self, now: float, limit: int) -> list[Cron]:
        m = self._crons.mark
        query = CRONS.select(f"WHERE {_DUE} AND next_run_at <= {m} ORDER BY next_run_at LIMIT {m}")
        return await self._read(
            lambda db: [CRONS.load(row) for row in db.execute(query, (now, limit))]
        )

    async def next_cron_at(self) -> float | None:
        row = await self._read(lambda db: db.execute(_NEXT).fetchone())
        return None if row is None or row[0] is None else float(row[0])

    async def claim_cron(
        self, cron_id: str, due: float, next_at: float | None, token: str, at: float
    ) -> bool:
        m = self._crons.mark
        claim = (
            f"UPDATE crons SET next_run_at = {m}, claim = {m}, claimed_at = {m}"
            f" WHERE cron_id = {m} AND next_run_at = {m} AND {_DUE}"
        )
        args = (next_at, token, at, cron_id, due)
        return await self._write(lambda c: bool(c.execute(claim, args).rowcount == 1))

    async def stale_claims(self, before: float) -> list[Cron]:
        m = self._crons.mark
        query = CRONS.select(f"WHERE claim IS NOT NULL AND claimed_at < {m} ORDER BY claimed_at")
        return await self._read(
            lambda db: [CRONS.load(row) for row in db.execute(query, (before,))]
        )

    async def retake_claim(self, cron_id: str, token: str, new_token: str, at: float) -> bool:
        m = self._crons.mark
        retake = (
            f"UPDATE crons SET claim = {m}, claimed_at = {m} WHERE cron_id = {m} AND claim = {m}"
        )
        args = (new_token, at, cron_id, token)
        return await self._write(lambda c: bool(c.execute(retake, args).rowcount == 1))

    async def release_claim(self, cron_id: str, token: str) -> None:
        release = self._crons.release
        await self._write(lambda c: c.execute(release, (cron_id, token)))


class SQLiteCrons(SQLiteBase, CronsOnSQL):
    """The :class:`CronStore` part of :class:`~runyard.store.SQLiteStore`."""

    _crons = SQLITE_CRONS
