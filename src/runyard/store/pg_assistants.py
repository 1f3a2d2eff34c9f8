"""Assistants in a PostgreSQL store: the :class:`~.assistants.AssistantStore` part.

The same tables and rules as :mod:`.assistants`: ``assistants`` holds each
one as it is now, ``assistant_versions`` every version made. A change locks
the assistant's row before it reads the last version, so changes through two
replicas at once make two versions and neither is lost. Searches filter on
the owner and the graph in SQL and on the name and metadata in Python, with
the same functions, sorted as SQLite sorts (names without regard to ASCII
case: ``lower()`` under the columns' "C" collation folds ASCII only).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator

from ..model import JSON, Assistant
from .assistants import _FOLDED, SORTABLE, AssistantFilter, _page, contains
from .pg_connection import PostgresBase, scan
from .pg_schema import Conn, insert, order
from .schema import ASSISTANT_VERSIONS, ASSISTANTS

_ADD = insert(ASSISTANTS, "ignore")
_ADD_VERSION = insert(ASSISTANT_VERSIONS)
_REPLACE = insert(ASSISTANTS, "replace")
_GET = ASSISTANTS.select("WHERE assistant_id = %s")
_LOCK_OWNED = ASSISTANTS.select("WHERE assistant_id = %s AND owner = %s FOR UPDATE")
_GET_VERSION = ASSISTANT_VERSIONS.select("WHERE assistant_id = %s AND version = %s")
_VERSIONS = ASSISTANT_VERSIONS.select("WHERE assistant_id = %s ORDER BY version DESC")
_LAST_VERSION = "SELECT max(version) FROM assistant_versions WHERE assistant_id = %s"


def _get(db: Conn, assistant_id: str) -> Assistant | None:
    row = db.execute(_GET, (assistant_id,)).fetchone()
    return None if row is None else ASSISTANTS.load(row)


def _lock(c: Conn, assistant_id: str, owner: str) -> Assistant | None:
    """The owner's assistant, its row held until the transaction ends."""
    row = c.execute(_LOCK_OWNED, (assistant_id, owner)).fetchone()
    return None if row is None else ASSISTANTS.load(row)


def _add(c: Conn, assistant: Assistant) -> tuple[Assistant, bool]:
    if c.execute(_ADD, ASSISTANTS.row(assistant)).rowcount:
        c.execute(_ADD_VERSION, ASSISTANT_VERSIONS.row(assistant))
        return assistant, True
    existing = _get(c, assistant.assistant_id)
    assert existing is not None, "the row in the way is committed (read committed)"
    return existing, False


def _change(
    c: Conn, assistant_id: str, owner: str, change: Callable[[Assistant], Assistant]
) -> Assistant | None:
    current = _lock(c, assistant_id, owner)
    if current is None:
        return None
    (last,) = c.execute(_LAST_VERSION, (assistant_id,)).fetchone() or (None,)
    changed = dataclasses.replace(change(current), version=(last or 0) + 1)
    c.execute(_REPLACE, ASSISTANTS.row(changed))
    # A version's own times are when it was made.
    made = dataclasses.replace(changed, created_at=changed.updated_at)
    c.execute(_ADD_VERSION, ASSISTANT_VERSIONS.row(made))
    return changed


def _set_latest(
    c: Conn, assistant_id: str, owner: str, version: int, updated_at: float
) -> Assistant | None:
    current = _lock(c, assistant_id, owner)
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


def _matching(db: Conn, where: AssistantFilter, order_by: str = "") -> Iterator[Assistant]:
    """The filter's assistants, ``order_by`` being an ``ORDER BY`` clause or nothing."""
    if not where.graph_ids:
        return
    query = ASSISTANTS.select(f"WHERE owner = %s AND graph_id = ANY(%s) {order_by}")
    with scan(db, query, (where.owner, list(where.graph_ids))) as rows:
        for row in rows:
            assistant = ASSISTANTS.load(row)
            if where.matches(assistant):
                yield assistant


def _order(sort_by: str, descending: bool) -> str:
    """The ``ORDER BY`` of :func:`~.assistants.sort_key`."""
    assert sort_by in SORTABLE
    column = f'lower("{sort_by}")' if sort_by in _FOLDED else f'"{sort_by}"'
    tie = order("assistant_id", descending=descending)
    return f"ORDER BY {order(column, descending=descending)}, {tie}"


class PostgresAssistants(PostgresBase):
    """The :class:`~.assistants.AssistantStore` part of a PostgreSQL store."""

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
        order_by = _order(sort_by, descending)
        return await self._read(lambda db: _page(_matching(db, where, order_by), limit, offset))

    async def count_assistants(self, where: AssistantFilter) -> int:
        return await self._read(lambda db: sum(1 for _ in _matching(db, where)))

    async def assistant_versions(
        self, assistant_id: str, *, metadata: dict[str, JSON], limit: int, offset: int
    ) -> list[Assistant]:
        def versions(db: Conn) -> list[Assistant]:
            with scan(db, _VERSIONS, (assistant_id,)) as rows:
                found = (ASSISTANT_VERSIONS.load(r) for r in rows)
                return _page((v for v in found if contains(v.metadata, metadata)), limit, offset)

        return await self._read(versions)

    async def delete_assistant(self, assistant_id: str, owner: str) -> bool:
        def delete(c: Conn) -> bool:
            gone = c.execute(
                "DELETE FROM assistants WHERE assistant_id = %s AND owner = %s",
                (assistant_id, owner),
            ).rowcount
            if gone:
                c.execute("DELETE FROM assistant_versions WHERE assistant_id = %s", (assistant_id,))
            return bool(gone)

        return await self._write(delete)
