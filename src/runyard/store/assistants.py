"""Assistants: a graph with its configuration, and every version of it.

The ``assistants`` table holds each assistant as it is now (its latest
version, which a client may set back to an older one); ``assistant_versions``
holds every version ever made, the latest included. A change is read, applied
and written in one transaction, so two changes at once make two versions and
neither is lost.

Searches filter on the owner and the graph in SQL and on the name and the
metadata in Python, as the rows go by in the order asked for, and stop once the
page is full.
"""

from __future__ import annotations

import contextlib
import dataclasses
import sqlite3
from collections.abc import Callable, Iterator
from typing import Protocol

from ..model import JSON, Assistant
from .connection import SQLiteBase
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


_ADD = ASSISTANTS.insert()
_ADD_VERSION = ASSISTANT_VERSIONS.insert()
_REPLACE = ASSISTANTS.insert("INSERT OR REPLACE")
_GET = ASSISTANTS.select("WHERE assistant_id = ?")
_GET_OWNED = ASSISTANTS.select("WHERE assistant_id = ? AND owner = ?")
_GET_VERSION = ASSISTANT_VERSIONS.select("WHERE assistant_id = ? AND version = ?")
_VERSIONS = ASSISTANT_VERSIONS.select("WHERE assistant_id = ? ORDER BY version DESC")
_LAST_VERSION = "SELECT max(version) FROM assistant_versions WHERE assistant_id = ?"


def _get(db: sqlite3.Connection, assistant_id: str, owner: str | None = None) -> Assistant | None:
    if owner is None:
        row = db.execute(_GET, (assistant_id,)).fetchone()
    else:
        row = db.execute(_GET_OWNED, (assistant_id, owner)).fetchone()
    return None if row is None else ASSISTANTS.load(row)


def _add(c: sqlite3.Connection, assistant: Assistant) -> tuple[Assistant, bool]:
    existing = _get(c, assistant.assistant_id)
    if existing is not None:
        return existing, False
    c.execute(_ADD, ASSISTANTS.row(assistant))
    c.execute(_ADD_VERSION, ASSISTANT_VERSIONS.row(assistant))
    return assistant, True


def _change(
    c: sqlite3.Connection, assistant_id: str, owner: str, change: Callable[[Assistant], Assistant]
) -> Assistant | None:
    current = _get(c, assistant_id, owner)
    if current is None:
        return None
    (last,) = c.execute(_LAST_VERSION, (assistant_id,)).fetchone()
    changed = dataclasses.replace(change(current), version=(last or 0) + 1)
    c.execute(_REPLACE, ASSISTANTS.row(changed))
    # A version's own times are when it was made.
    made = dataclasses.replace(changed, created_at=changed.updated_at)
    c.execute(_ADD_VERSION, ASSISTANT_VERSIONS.row(made))
    return changed


def _set_latest(
    c: sqlite3.Connection, assistant_id: str, owner: str, version: int, updated_at: float
) -> Assistant | None:
    current = _get(c, assistant_id, owner)
    row = c.execute(_GET_VERSION, (assistant_id, version)).fetchone()
    if current is None or row is None:
        return None
    latest = dataclasses.replace(
        ASSISTANT_VERSIONS.load(row),
        created_at=current.created_at,
        updated_at=updated_at,
        owner=current.owner,
    )
    c.execute(_REPLACE, ASSISTANTS.row(latest))
    return latest


def _matching(
    db: sqlite3.Connection, where: AssistantFilter, order: str = ""
) -> Iterator[Assistant]:
    """The filter's assistants, ``order`` being an ``ORDER BY`` clause or nothing."""
    if not where.graph_ids:
        return
    marks = ", ".join("?" * len(where.graph_ids))
    query = ASSISTANTS.select(f"WHERE owner = ? AND graph_id IN ({marks}) {order}")
    with contextlib.closing(db.execute(query, (where.owner, *where.graph_ids))) as rows:
        for row in rows:
            assistant = ASSISTANTS.load(row)
            if where.matches(assistant):
                yield assistant


def _order(sort_by: str, descending: bool) -> str:
    """The ``ORDER BY`` of :func:`sort_key`."""
    assert sort_by in SORTABLE
    direction = "DESC" if descending else "ASC"
    collate = " COLLATE NOCASE" if sort_by in _FOLDED else ""
    return f'ORDER BY "{sort_by}"{collate} {direction}, assistant_id {direction}'


def _page(found: Iterator[Assistant], limit: int, offset: int) -> list[Assistant]:
    page: list[Assistant] = []
    for i, assistant in enumerate(found):
        if i >= offset:
            page.append(assistant)
            if len(page) >= limit:
                break
    return page


class SQLiteAssistants(SQLiteBase):
    """The :class:`AssistantStore` part of :class:`~runyard.store.SQLiteStore`."""

    async def add_assistant(self, assistant: Assistant) -> tuple[Assistant, bool]:
        return await self._write(lambda c: _add(c, assistant))

    async def get_assistant(self, assistant_id: str) -> Assistant | None:
        return await self._read(lambda db: _get(db, assistant_id))

    async def change_assistant(
        self, assistant_id: str, owner: str, change: Callable[[Assistant], Assistant]
    ) -> Assistant | None:
        return await self._write(lambda c: _change(c, assistant_id, owner, change))

    async def set_latest_assistant(
        self, assistant_id: str, owner: str, version: int, updated_at: float
    ) -> Assistant | None:
        return await self._write(lambda c: _set_latest(c, assistant_id, owner, version, updated_at))

    async def search_assistants(
        self, where: AssistantFilter, *, sort_by: str, descending: bool, limit: int, offset: int
    ) -> list[Assistant]:
        order = _order(sort_by, descending)
        return await self._read(lambda db: _page(_matching(db, where, order), limit, offset))

    async def count_assistants(self, where: AssistantFilter) -> int:
        return await self._read(lambda db: sum(1 for _ in _matching(db, where)))

    async def assistant_versions(
        self, assistant_id: str, *, metadata: dict[str, JSON], limit: int, offset: int
    ) -> list[Assistant]:
        def versions(db: sqlite3.Connection) -> list[Assistant]:
            with contextlib.closing(db.execute(_VERSIONS, (assistant_id,))) as rows:
                found = (ASSISTANT_VERSIONS.load(r) for r in rows)
                return _page((v for v in found if contains(v.metadata, metadata)), limit, offset)

        return await self._read(versions)

    async def delete_assistant(self, assistant_id: str, owner: str) -> bool:
        def delete(c: sqlite3.Connection) -> bool:
            gone = c.execute(
                "DELETE FROM assistants WHERE assistant_id = ? AND owner = ?", (assistant_id, owner)
            ).rowcount
            if gone:
                c.execute("DELETE FROM assistant_versions WHERE assistant_id = ?", (assistant_id,))
            return bool(gone)

        return await self._write(delete)
