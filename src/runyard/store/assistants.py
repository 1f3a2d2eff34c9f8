"""Assistants: a graph with its configuration, and every version of it.

The ``assistants`` table holds each assistant as it is now (its latest
version, which a client may set back to an older one); ``assistant_versions``
holds every version ever made, the latest included. A change is read, applied
and written in one transaction, so two changes at once make two versions and
neither is lost.

Searches filter on the owner and the graph in SQL and on the name and the
metadata in Python, as the rows go by in the order asked for, and stop once the
page is full.

Both stores run the same code (:class:`AssistantsOnSQL`); what their statements
write differently is an :class:`AssistantSql`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from ..model import JSON, Assistant
from .connection import SQLiteBase, closing_scan, sqlite_one_of
from .interface import OneOf, OnSQL, Scan, page_of
from .schema import ASSISTANT_VERSIONS, ASSISTANTS

# The fields a search may be sorted by (LangGraph's ``sort_by``).
SORTABLE = ("assistant_id", "graph_id", "name", "created_at", "updated_at")
# Sorted without regard to case (ASCII, as SQLite's NOCASE folds it).
_FOLDED = frozenset({"graph_id", "name"})
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def contains(whole: dict[str, JSON], part: dict[str, JSON]) -> bool:
    """Whether every pair of ``part`` is in ``whole``; nested objects match by containment."""
    for key, wanted in part.items():
        if key not in whole:
            return False
        have = whole[key]
        if isinstance(wanted, dict) and isinstance(have, dict):
            if not contains(have, wanted):
                return False
        elif have != wanted:
            return False
    return True


@dataclasses.dataclass(frozen=True, slots=True)
class AssistantFilter:
    """Which assistants a search or a count picks: those of ``owner`` that match it all."""

    owner: str
    graph_ids: tuple[str, ...]  # the graphs allowed: the registered ones, or the one asked for
    name: str = ""  # a part of the name, in any case
    metadata: dict[str, JSON] = dataclasses.field(default_factory=dict)  # contained in theirs

    def matches(self, assistant: Assistant) -> bool:
        """Whether ``assistant`` matches all but the owner (the store applies that in SQL)."""
        return (
            assistant.graph_id in self.graph_ids
            and self.name.lower() in assistant.name.lower()
            and contains(assistant.metadata, self.metadata)
        )


def sort_key(sort_by: str) -> Callable[[Assistant], tuple[str | float, str]]:
    """The order :meth:`AssistantStore.search_assistants` sorts in, for merging in Python."""
    assert sort_by in SORTABLE

    def key(assistant: Assistant) -> tuple[str | float, str]:
        value: str | float = getattr(assistant, sort_by)
        if sort_by in _FOLDED:
            value = str(value).translate(_ASCII_LOWER)
        return value, assistant.assistant_id

    return key


class AssistantStore(Protocol):
    """Creating, versioning, searching and deleting assistants."""

    async def add_assistant(self, assistant: Assistant) -> tuple[Assistant, bool]:
        """Store a new assistant as its version 1.

        Returns the assistant stored under its id and whether it is the new
        one: when the id is taken, nothing changes and the existing one is returned.
        """

    async def get_assistant(self, assistant_id: str) -> Assistant | None:
        """The assistant as it is now (its latest version), whoever owns it."""

    async def change_assistant(
        self, assistant_id: str, owner: str, change: Callable[[Assistant], Assistant]
    ) -> Assistant | None:
        """Apply ``change`` to the owner's assistant and store the result as its next version.

        Read, change and write are one transaction. The new version becomes the
        latest; its number is the highest so far plus one. ``change`` may raise
        to change nothing. None when the owner has no such assistant.
        """

    async def set_latest_assistant(
        self, assistant_id: str, owner: str, version: int, updated_at: float
    ) -> Assistant | None:
        """Make an earlier (or later) version the latest; None if either is unknown."""

    async def search_assistants(
        self, where: AssistantFilter, *, sort_by: str, descending: bool, limit: int, offset: int
    ) -> list[Assistant]:
        """A page of the matching assistants, sorted by :func:`sort_key`."""

    async def count_assistants(self, where: AssistantFilter) -> int:
        """How many assistants match."""

    async def assistant_versions(
        self, assistant_id: str, *, metadata: dict[str, JSON], limit: int, offset: int
    ) -> list[Assistant]:
        """A page of an assistant's versions, newest first, whose metadata contains ``metadata``."""

    async def delete_assistant(self, assistant_id: str, owner: str) -> bool:
        """Delete the owner's assistant and all its versions; False if there was none."""


class Order(Protocol):
    """An ``ORDER BY`` term in one database's dialect, NULL sorting lowest as in SQLite."""

    def __call__(self, expression: str, *, descending: bool = False) -> str: ...


def sqlite_order(expression: str, *, descending: bool = False) -> str:
    """SQLite's :class:`Order`."""
    return f"{expression} {'DESC' if descending else 'ASC'}"


@dataclasses.dataclass(frozen=True)
class AssistantSql:
    """The assistants' statements in one database's dialect: its placeholder ``mark``; the
    INSERT of an assistant (left alone if its id is taken), of a version, and the one that
    replaces an assistant; what holds a row read for a change (``lock``); how it streams a
    search's rows (:data:`~.interface.Scan`) and picks rows by a list
    (:data:`~.interface.OneOf`); ``fold``, a column without regard to ASCII case (a
    format string); and how it sorts."""

    mark: str
    add: str
    add_version: str
    replace: str
    lock: str
    scan: Scan
    one_of: OneOf
    fold: str
    order: Order


SQLITE_ASSISTANTS = AssistantSql(
    mark="?",
    add=ASSISTANTS.insert("INSERT OR IGNORE"),
    add_version=ASSISTANT_VERSIONS.insert(),
    replace=ASSISTANTS.insert("INSERT OR REPLACE"),
    lock="",
    scan=closing_scan,
    one_of=sqlite_one_of,
    fold="{} COLLATE NOCASE",
    order=sqlite_order,
)


def _get(sql: AssistantSql, db: Any, assistant_id: str) -> Assistant | None:
    query = ASSISTANTS.select(f"WHERE assistant_id = {sql.mark}")
    row = db.execute(query, (assistant_id,)).fetchone()
    return None if row is None else ASSISTANTS.load(row)


def _owned(sql: AssistantSql, c: Any, assistant_id: str, owner: str) -> Assistant | None:
    """The owner's assistant, its row held until the transaction ends."""
    query = ASSISTANTS.select(f"WHERE assistant_id = {sql.mark} AND owner = {sql.mark}{sql.lock}")
    row = c.execute(query, (assistant_id, owner)).fetchone()
    return None if row is None else ASSISTANTS.load(row)


def _add(sql: AssistantSql, c: Any, assistant: Assistant) -> tuple[Assistant, bool]:
    if c.execute(sql.add, ASSISTANTS.row(assistant)).rowcount:
        c.execute(sql.add_version, ASSISTANT_VERSIONS.row(assistant))
        return assistant, True
    existing = _get(sql, c, assistant.assistant_id)
    assert existing is not None, "the row in the way is committed (read committed)"
    return existing, False


def _change(
    sql: AssistantSql,
    c: Any,
    assistant_id: str,
    owner: str,
    change: Callable[[Assistant], Assistant],
) -> Assistant | None:
    current = _owned(sql, c, assistant_id, owner)
    if current is None:
        return None
    last_version = f"SELECT max(version) FROM assistant_versions WHERE assistant_id = {sql.mark}"
    (last,) = c.execute(last_version, (assistant_id,)).fetchone() or (None,)
    changed = dataclasses.replace(change(current), version=(last or 0) + 1)
    c.execute(sql.replace, ASSISTANTS.row(changed))
    # A version's own times are when it was made.
    made = dataclasses.replace(changed, created_at=changed.updated_at)
    c.execute(sql.add_version, ASSISTANT_VERSIONS.row(made))
    return changed


def _set_latest(
    sql: AssistantSql, c: Any, assistant_id: str, owner: str, version: int, updated_at: float
) -> Assistant | None:
    current = _owned(sql, c, assistant_id, owner)
    m = sql.mark
    query = ASSISTANT_VERSIONS.select(f"WHERE assistant_id = {m} AND version = {m}")
    row = c.execute(query, (assistant_id, version)).fetchone()
    if current is None or row is None:
        return None
    latest = dataclasses.replace(
        ASSISTANT_VERSIONS.load(row),
        created_at=current.created_at,
        updated_at=updated_at,
        owner=current.owner,
    )
    c.execute(sql.replace, ASSISTANTS.row(latest))
    return latest


def _matching(
    sql: AssistantSql, db: Any, where: AssistantFilter, order_by: str = ""
) -> Iterator[Assistant]:
    """The filter's assistants, ``order_by`` being an ``ORDER BY`` clause or nothing."""
    if not where.graph_ids:
        return
    graphs, args = sql.one_of("graph_id", where.graph_ids)
    query = ASSISTANTS.select(f"WHERE owner = {sql.mark} AND {graphs} {order_by}")
    with sql.scan(db, query, [where.owner, *args]) as rows:
        for row in rows:
            assistant = ASSISTANTS.load(row)
            if where.matches(assistant):
                yield assistant


def _order(sql: AssistantSql, sort_by: str, descending: bool) -> str:
    """The ``ORDER BY`` of :func:`sort_key`."""
    assert sort_by in SORTABLE
    column = f'"{sort_by}"'
    if sort_by in _FOLDED:
        column = sql.fold.format(column)
    tie = sql.order("assistant_id", descending=descending)
    return f"ORDER BY {sql.order(column, descending=descending)}, {tie}"


class AssistantsOnSQL(OnSQL):
    """The :class:`AssistantStore`, for a store whose ``_read``/``_write`` run SQL of
    ``_assistants``."""

    _assistants: AssistantSql

    async def add_assistant(self, assistant: Assistant) -> tuple[Assistant, bool]:
        return await self._write(lambda c: _add(self._assistants, c, assistant))

    async def get_assistant(self, assistant_id: str) -> Assistant | None:
        return await self._read(lambda db: _get(self._assistants, db, assistant_id))

    async def change_assistant(
        self, assistant_id: str, owner: str, change: Callable[[Assistant], Assistant]
    ) -> Assistant | None:
        sql = self._assistants
        return await self._write(lambda c: _change(sql, c, assistant_id, owner, change))

    async def set_latest_assistant(
        self, assistant_id: str, owner: str, version: int, updated_at: float
    ) -> Assistant | None:
        sql = self._assistants
        return await self._write(
            lambda c: _set_latest(sql, c, assistant_id, owner, version, updated_at)
        )

    async def search_assistants(
        self, where: AssistantFilter, *, sort_by: str, descending: bool, limit: int, offset: int
    ) -> list[Assistant]:
        sql = self._assistants
        order_by = _order(sql, sort_by, descending)
        return await self._read(
            lambda db: page_of(_matching(sql, db, where, order_by), limit, offset)
        )

    async def count_assistants(self, where: AssistantFilter) -> int:
        return await self._read(lambda db: sum(1 for _ in _matching(self._assistants, db, where)))

    async def assistant_versions(
        self, assistant_id: str, *, metadata: dict[str, JSON], limit: int, offset: int
    ) -> list[Assistant]:
        sql = self._assistants
        query = ASSISTANT_VERSIONS.select(f"WHERE assistant_id = {sql.mark} ORDER BY version DESC")

        def versions(db: Any) -> list[Assistant]:
            with sql.scan(db, query, [assistant_id]) as rows:
                found = (ASSISTANT_VERSIONS.load(r) for r in rows)
                return page_of((v for v in found if contains(v.metadata, metadata)), limit, offset)

        return await self._read(versions)

    async def delete_assistant(self, assistant_id: str, owner: str) -> bool:
        m = self._assistants.mark
        delete_one = f"DELETE FROM assistants WHERE assistant_id = {m} AND owner = {m}"
        delete_versions = f"DELETE FROM assistant_versions WHERE assistant_id = {m}"

        def delete(c: Any) -> bool:
            gone = c.execute(delete_one, (assistant_id, owner)).rowcount
            if gone:
                c.execute(delete_versions, (assistant_id,))
            return bool(gone)

        return await self._write(delete)


class SQLiteAssistants(SQLiteBase, AssistantsOnSQL):
    """The :class:`AssistantStore` part of :class:`~runyard.store.SQLiteStore`."""

    _assistants = SQLITE_ASSISTANTS
