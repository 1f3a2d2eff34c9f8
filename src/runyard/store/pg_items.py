"""The memory store's items in a PostgreSQL store: the :class:`~.items.ItemStore` part.

The same rules as :mod:`.items`, checked by the same functions before any
I/O: an owner sees only its items, a ``ttl`` expires an item, a search's
``filter`` is matched in Python on the decoded values as the rows stream out
newest first. Namespaces are one ``text`` value each, labels joined by the
unit separator; the ``"C"`` collation of the column makes the range that
picks a prefix's namespaces the same as in SQLite.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..errors import Invalid
from ..model import JSON, Item, now
from .items import (
    WILDCARD,
    Namespace,
    _check_key,
    _check_paging,
    _check_ttl,
    _fits,
    check_filter,
    check_namespace,
    matches,
)
from .pg_connection import PostgresBase, scan
from .pg_schema import Conn, insert
from .schema import ITEMS, NAMESPACE_SEPARATOR

_LIVE = "(expires_at IS NULL OR expires_at > %s)"
_KEY = "owner = %s AND namespace = %s AND key = %s"
# An update keeps created_at, unless the row it replaces had expired.
_PUT = insert(ITEMS) + (
    " ON CONFLICT (owner, namespace, key) DO UPDATE SET value = excluded.value,"
    " updated_at = excluded.updated_at, expires_at = excluded.expires_at,"
    " created_at = CASE WHEN items.expires_at IS NOT NULL"
    " AND items.expires_at <= excluded.updated_at"
    " THEN excluded.created_at ELSE items.created_at END"
)
_GET = ITEMS.select(f"WHERE {_KEY} AND {_LIVE}")
_ORDER = " ORDER BY updated_at DESC, namespace, key"


def _path(namespace: Namespace) -> str:
    return NAMESPACE_SEPARATOR.join(namespace)


def _under(prefix: Namespace) -> tuple[str, list[str]]:
    """A WHERE clause (and its arguments) for the namespaces at or under ``prefix``."""
    if not prefix:
        return "", []
    path = _path(prefix)
    # Paths under it start with path + separator: the range up to the next code point.
    below = chr(ord(NAMESPACE_SEPARATOR) + 1)
    clause = " AND (namespace = %s OR (namespace > %s AND namespace < %s))"
    return clause, [path, path + NAMESPACE_SEPARATOR, path + below]


def _search(
    db: Conn,
    where: str,
    args: list[Any],
    filter: Mapping[str, JSON] | None,
    limit: int,
    offset: int,
) -> list[Item]:
    if not filter:
        query = ITEMS.select(where + _ORDER + " LIMIT %s OFFSET %s")
        return [ITEMS.load(r) for r in db.execute(query, [*args, limit, offset])]
    found: list[Item] = []
    skipped = 0
    with scan(db, ITEMS.select(where + _ORDER), args) as rows:
        for row in rows:
            if len(found) >= limit:
                break
            item = ITEMS.load(row)
            if not matches(item.value, filter):
                continue
            if skipped < offset:
                skipped += 1
            else:
                found.append(item)
    return found


class PostgresItems(PostgresBase):
    """The :class:`~.items.ItemStore` part of a PostgreSQL store."""

    async def put_item(
        self,
        owner: str,
        namespace: Namespace,
        key: str,
        value: Mapping[str, JSON],
        *,
        ttl: float | None = None,
    ) -> None:
        check_namespace(namespace)
        _check_key(key)
        if not isinstance(value, Mapping):
            raise Invalid("field 'value' must be an object")
        _check_ttl(ttl)
        at = now()
        expires = None if ttl is None else at + ttl * 60
        item = Item(namespace, key, dict(value), at, at, owner=owner, expires_at=expires)
        # A lone surrogate in the value is kept as its JSON escape (runyard.model.dumps).
        await self._write(lambda c: c.execute(_PUT, ITEMS.row(item)))

    async def get_item(self, owner: str, namespace: Namespace, key: str) -> Item | None:
        check_namespace(namespace)
        _check_key(key)
        args = (owner, _path(namespace), key, now())
        row = await self._read(lambda db: db.execute(_GET, args).fetchone())
        return None if row is None else ITEMS.load(row)

    async def delete_item(self, owner: str, namespace: Namespace, key: str) -> None:
        check_namespace(namespace)
        _check_key(key)
        args = (owner, _path(namespace), key)
        await self._write(lambda c: c.execute(f"DELETE FROM items WHERE {_KEY}", args))

    async def search_items(
        self,
        owner: str,
        prefix: Namespace,
        *,
        filter: Mapping[str, JSON] | None = None,
        limit: int = 10,
        offset: int = 0,
    ) -> list[Item]:
        check_namespace(prefix, "namespace_prefix", empty=True)
        if filter is not None:
            check_filter(filter)
        _check_paging(limit, offset)
        under, paths = _under(prefix)
        where = f"WHERE owner = %s AND {_LIVE}{under}"
        args: list[Any] = [owner, now(), *paths]
        return await self._read(lambda db: _search(db, where, args, filter, limit, offset))

    async def list_namespaces(
        self,
        owner: str,
        *,
        prefix: Namespace | None = None,
        suffix: Namespace | None = None,
        max_depth: int | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[Namespace]:
        for pattern, name in ((prefix, "prefix"), (suffix, "suffix")):
            if pattern is not None:
                check_namespace(pattern, name, empty=True)
        if max_depth is not None and max_depth < 1:
            raise Invalid("field 'max_depth' must be at least 1")
        _check_paging(limit, offset)
        literal = tuple(prefix or ())
        if WILDCARD in literal:
            literal = literal[: literal.index(WILDCARD)]
        under, paths = _under(literal)
        query = f"SELECT DISTINCT namespace FROM items WHERE owner = %s AND {_LIVE}{under}"
        args: list[Any] = [owner, now(), *paths]
        rows = await self._read(lambda db: db.execute(query, args).fetchall())
        found: set[Namespace] = set()
        for (text,) in rows:
            namespace = tuple(text.split(NAMESPACE_SEPARATOR))
            if prefix and not _fits(namespace, prefix, from_end=False):
                continue
            if suffix and not _fits(namespace, suffix, from_end=True):
                continue
            found.add(namespace[:max_depth] if max_depth is not None else namespace)
        return sorted(found)[offset : offset + limit]

    async def purge_items(self, before: float | None = None) -> int:
        cutoff = now() if before is None else before

        def purge(c: Conn) -> int:
            return c.execute("DELETE FROM items WHERE expires_at <= %s", (cutoff,)).rowcount

        return await self._write(purge)
