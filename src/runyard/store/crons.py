"""Crons in the store, and the claims that make each of their times fire once.

The scheduler (:mod:`runyard.cron_scheduler`) fires a due cron in two steps:

1. :meth:`CronStore.claim_cron` moves ``next_run_at`` from the due time to the
   next one and records a claim token, in one compare-and-set: of any number
   of schedulers (replicas, or a restarted process) exactly one wins a time.
2. The run it then creates carries the token in its kwargs
   (:data:`CLAIM_KEY`), and the transaction that writes the run's row clears
   the claim (:func:`fired`, called by ``queries.commit``).

A claim still set is therefore a time whose run was never written: the
process died between the two steps, or the run was refused. The scheduler
takes over such claims (:meth:`CronStore.retake_claim`, again a
compare-and-set) and fires them; nothing else fires a time twice.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable, Iterator
from typing import Protocol

from ..model import JSON, Cron, Run
from .assistants import contains
from .connection import SQLiteBase
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


_ADD = CRONS.insert()
_REPLACE = CRONS.insert("INSERT OR REPLACE")
_GET = CRONS.select("WHERE cron_id = ?")
_DUE_WHERE = "enabled = 1 AND claim IS NULL AND next_run_at IS NOT NULL"
_DUE = CRONS.select(f"WHERE {_DUE_WHERE} AND next_run_at <= ? ORDER BY next_run_at LIMIT ?")
_NEXT = f"SELECT min(next_run_at) FROM crons WHERE {_DUE_WHERE}"
_CLAIM = (
    "UPDATE crons SET next_run_at = ?, claim = ?, claimed_at = ?"
    f" WHERE cron_id = ? AND next_run_at = ? AND {_DUE_WHERE}"
)
_STALE = CRONS.select("WHERE claim IS NOT NULL AND claimed_at < ? ORDER BY claimed_at")
_RETAKE = "UPDATE crons SET claim = ?, claimed_at = ? WHERE cron_id = ? AND claim = ?"
_RELEASE = "UPDATE crons SET claim = NULL, claimed_at = NULL WHERE cron_id = ? AND claim = ?"


def fired(c: sqlite3.Connection, runs: list[Run]) -> None:
    """Clear the claims of cron-fired runs, in the transaction that writes their rows."""
    claims = [
        (run.metadata["cron_id"], run.kwargs[CLAIM_KEY])
        for run in runs
        if CLAIM_KEY in run.kwargs and "cron_id" in run.metadata
    ]
    if claims:
        c.executemany(_RELEASE, claims)


def delete_for_thread(c: sqlite3.Connection, thread_id: str) -> None:
    """A thread's crons go with it."""
    c.execute("DELETE FROM crons WHERE thread_id = ?", (thread_id,))


def _get(db: sqlite3.Connection, cron_id: str, owner: str | None = None) -> Cron | None:
    row = db.execute(_GET, (cron_id,)).fetchone()
    cron = None if row is None else CRONS.load(row)
    return None if cron is None or owner not in (None, cron.owner) else cron


def _change(
    c: sqlite3.Connection, cron_id: str, owner: str, change: Callable[[Cron], Cron]
) -> Cron | None:
    current = _get(c, cron_id, owner)
    if current is None:
        return None
    changed = change(current)
    c.execute(_REPLACE, CRONS.row(changed))
    return changed


def _matching(
    db: sqlite3.Connection,
    owner: str,
    assistant_id: str | None,
    thread_id: str | None,
    enabled: bool | None,
    metadata: dict[str, JSON],
    order: str = "",
) -> Iterator[Cron]:
    where: list[str] = ["owner = ?"]
    args: list[str | int] = [owner]
    for column, value in (("assistant_id", assistant_id), ("thread_id", thread_id)):
        if value is not None:
            where.append(f"{column} = ?")
            args.append(value)
    if enabled is not None:
        where.append("enabled = ?")
        args.append(int(enabled))
    query = CRONS.select(f"WHERE {' AND '.join(where)} {order}")
    with contextlib.closing(db.execute(query, args)) as rows:
        for row in rows:
            cron = CRONS.load(row)
            if contains(cron.metadata, metadata):
                yield cron


def _order(sort_by: str, descending: bool) -> str:
    assert sort_by in SORTABLE
    direction = "DESC" if descending else "ASC"
    return f'ORDER BY "{_COLUMN.get(sort_by, sort_by)}" {direction}, cron_id {direction}'


def _page(found: Iterator[Cron], limit: int, offset: int) -> list[Cron]:
    page: list[Cron] = []
    for i, cron in enumerate(found):
        if i >= offset:
            page.append(cron)
            if len(page) >= limit:
                break
    return page


class SQLiteCrons(SQLiteBase):
    """The :class:`CronStore` part of :class:`~runyard.store.SQLiteStore`."""

    async def put_cron(self, cron: Cron) -> None:
        await self._write(lambda c: c.execute(_ADD, CRONS.row(cron)))

    async def get_cron(self, cron_id: str) -> Cron | None:
        return await self._read(lambda db: _get(db, cron_id))

    async def change_cron(
        self, cron_id: str, owner: str, change: Callable[[Cron], Cron]
    ) -> Cron | None:
        return await self._write(lambda c: _change(c, cron_id, owner, change))

    async def delete_cron(self, cron_id: str, owner: str) -> bool:
        sql = "DELETE FROM crons WHERE cron_id = ? AND owner = ?"
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
        order = _order(sort_by, descending)
        return await self._read(
            lambda db: _page(
                _matching(db, owner, assistant_id, thread_id, enabled, metadata, order),
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
        def soonest(db: sqlite3.Connection) -> float | None:
            (found,) = db.execute(_NEXT).fetchone()
            return None if found is None else float(found)

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
