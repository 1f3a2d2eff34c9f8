"""The memory store's items: JSON documents under namespace paths, per owner.

An item is a JSON object stored under an owner, a namespace (a path of
labels, such as ``("users", "u1", "memories")``) and a key. Every operation
names its owner, and an owner never sees another's items. An item put with a
``ttl`` (minutes, as in LangGraph) expires that long after the put: from then
on no read returns it and a later put starts it afresh; :meth:`purge_items`
deletes expired rows for good.

The operation's arguments are checked here, before any I/O, and a bad one
raises :class:`~runyard.errors.Invalid` naming it, so the HTTP API and the
graphs' :class:`~runyard.memory.RunyardMemory` refuse the same input alike.
A search's ``filter`` is matched on the decoded values in the reader's
thread, as the rows stream out newest first.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from typing import Any, Protocol, TypeGuard

from ..errors import Invalid
from ..model import JSON, LABEL_FORBIDDEN, MAX_TTL_MINUTES, Item, now
from .connection import SQLiteBase, closing_scan
from .interface import OnSQL, Scan
from .schema import ITEMS, NAMESPACE_SEPARATOR

assert NAMESPACE_SEPARATOR in LABEL_FORBIDDEN, "no label can hold the separator"
# A wildcard label in a list_namespaces prefix or suffix.
WILDCARD = "*"
# The largest integer SQLite binds (LIMIT and OFFSET go to SQL).
SQL_INT_MAX = 2**63 - 1
# The comparisons a search filter may use on a field, as LangGraph's stores do.
OPERATORS = ("$eq", "$ne", "$gt", "$gte", "$lt", "$lte")

Namespace = tuple[str, ...]


class ItemStore(Protocol):
    """Putting, getting, searching and deleting items; listing namespaces."""

    async def put_item(
        self,
        owner: str,
        namespace: Namespace,
        key: str,
        value: Mapping[str, JSON],
        *,
        ttl: float | None = None,
    ) -> None:
        """Insert or replace an item; ``ttl`` in minutes from now, None: never expires.

        Replacing keeps the item's ``created_at`` (unless it had expired).
        """

    async def get_item(self, owner: str, namespace: Namespace, key: str) -> Item | None:
        """The item, or None when there is none (or it expired)."""

    async def delete_item(self, owner: str, namespace: Namespace, key: str) -> None:
        """Delete the item if it exists."""

    async def search_items(
        self,
        owner: str,
        prefix: Namespace,
        *,
        filter: Mapping[str, JSON] | None = None,
        limit: int = 10,
        offset: int = 0,
    ) -> list[Item]:
        """Items under ``prefix`` (``()``: all) whose values match ``filter``, newest first.

        ``filter`` maps a top-level field to a value it must equal, to an object
        it must contain, or to operators (``{"$gte": 3}``; see :data:`OPERATORS`).
        """

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
        """The namespaces holding items, sorted, each cut to ``max_depth`` labels.

        A ``*`` label in ``prefix`` or ``suffix`` matches any label.
        """

    async def purge_items(self, before: float | None = None) -> int:
        """Delete every owner's items that expired before ``before`` (now); return how many."""


# -- checks -----------------------------------------------------------------


def check_namespace(namespace: object, name: str = "namespace", *, empty: bool = False) -> None:
    """Raise :class:`Invalid` unless ``namespace`` is a tuple of good labels."""
    if not isinstance(namespace, tuple) or not all(isinstance(x, str) for x in namespace):
        raise Invalid(f"field '{name}' must be a list of strings")
    if not namespace and not empty:
        raise Invalid(f"field '{name}' must have at least one label")
    for label in namespace:
        if not label or any(c in label for c in LABEL_FORBIDDEN):
            raise Invalid(
                f"field '{name}' has a label that is empty or holds a period, NUL or"
                " unit separator; labels must be non-empty strings without them"
            )
        _check_unicode(label, name)


def _check_key(key: object) -> None:
    if not isinstance(key, str) or not key:
        raise Invalid("field 'key' must be a non-empty string")
    _check_unicode(key, "key")


def _check_unicode(text: str, name: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise Invalid(f"field '{name}' is not valid Unicode (a lone surrogate)") from None


def _check_ttl(ttl: object) -> None:
    if ttl is None:
        return
    if isinstance(ttl, bool) or not isinstance(ttl, int | float):
        raise Invalid("field 'ttl' must be a number of minutes or null")
    if not (math.isfinite(ttl) and 0 < ttl <= MAX_TTL_MINUTES):
        raise Invalid(f"field 'ttl' must be more than 0 and at most {MAX_TTL_MINUTES} minutes")


def _check_paging(limit: int, offset: int) -> None:
    if not (0 <= limit <= SQL_INT_MAX and 0 <= offset <= SQL_INT_MAX):
        raise Invalid(f"fields 'limit' and 'offset' must be from 0 to {SQL_INT_MAX}")


def _operators(condition: object) -> TypeGuard[Mapping[str, JSON]]:
    """Whether a filter condition is a set of operators (``{"$gt": 1}``)."""
    return isinstance(condition, Mapping) and any(str(k).startswith("$") for k in condition)


def check_filter(filter: object) -> None:
    """Raise :class:`Invalid` unless ``filter`` is an object of conditions we can match."""
    if not isinstance(filter, Mapping):
        raise Invalid("field 'filter' must be an object")
    for condition in filter.values():
        if _operators(condition):
            unknown = [k for k in condition if k not in OPERATORS]
            if unknown:
                raise Invalid(
                    f"field 'filter' uses {str(unknown[0])[:40]!r}; the operators are"
                    f" {', '.join(OPERATORS)}"
                )
        elif isinstance(condition, Mapping):
            check_filter(condition)


# -- matching (on decoded values, in the reader's thread) ------------------------


def matches(value: Mapping[str, JSON], filter: Mapping[str, JSON]) -> bool:
    """Whether an item's ``value`` meets every condition of a checked ``filter``."""
    for field, condition in filter.items():
        found = value.get(field)
        if _operators(condition):
            if not all(_compare(found, op, wanted) for op, wanted in condition.items()):
                return False
        elif isinstance(condition, Mapping):
            if not isinstance(found, Mapping) or not matches(found, condition):
                return False
        elif not _equal(found, condition):
            return False
    return True


def _equal(a: JSON, b: JSON) -> bool:
    """JSON equality: ``true`` is not ``1``, objects and lists compare member by member."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


_ORDERINGS: dict[str, Callable[[Any, Any], bool]] = {
    "$gt": lambda a, b: a > b,
    "$gte": lambda a, b: a >= b,
    "$lt": lambda a, b: a < b,
    "$lte": lambda a, b: a <= b,
}


def _compare(found: JSON, op: str, wanted: JSON) -> bool:
    if op == "$eq":
        return _equal(found, wanted)
    if op == "$ne":
        return not _equal(found, wanted)
    # Orderings hold between two numbers or two strings; anything else does not match.
    numbers = all(isinstance(x, int | float) and not isinstance(x, bool) for x in (found, wanted))
    strings = isinstance(found, str) and isinstance(wanted, str)
    return (numbers or strings) and _ORDERINGS[op](found, wanted)


def _fits(namespace: Namespace, pattern: Namespace, *, from_end: bool) -> bool:
    if len(namespace) < len(pattern):
        return False
    labels = namespace[len(namespace) - len(pattern) :] if from_end else namespace
    return all(p in (WILDCARD, label) for label, p in zip(labels, pattern, strict=False))


# -- SQL --------------------------------------------------------------------

_ORDER = " ORDER BY updated_at DESC, namespace, key"
# An update keeps created_at, unless the row it replaces had expired.
_UPSERT = (
    " ON CONFLICT (owner, namespace, key) DO UPDATE SET value = excluded.value,"
    " updated_at = excluded.updated_at, expires_at = excluded.expires_at,"
    " created_at = CASE WHEN items.expires_at IS NOT NULL"
    " AND items.expires_at <= excluded.updated_at"
    " THEN excluded.created_at ELSE items.created_at END"
)


def _path(namespace: Namespace) -> str:
    return NAMESPACE_SEPARATOR.join(namespace)


@dataclasses.dataclass(frozen=True)
class ItemSql:
    """The items' statements in one database's dialect: its placeholder ``mark``, its
    INSERT of a whole row, and how it streams a search's rows (:data:`Scan`)."""

    mark: str
    insert: str
    scan: Scan

    @property
    def live(self) -> str:
        return f"(expires_at IS NULL OR expires_at > {self.mark})"

    @property
    def key(self) -> str:
        m = self.mark
        return f"owner = {m} AND namespace = {m} AND key = {m}"

    def under(self, prefix: Namespace) -> tuple[str, list[str]]:
        """A WHERE clause (and its arguments) for the namespaces at or under ``prefix``."""
        if not prefix:
            return "", []
        path = _path(prefix)
        # Paths under it start with path + separator: the range up to the next code point.
        below = chr(ord(NAMESPACE_SEPARATOR) + 1)
        m = self.mark
        clause = f" AND (namespace = {m} OR (namespace > {m} AND namespace < {m}))"
        return clause, [path, path + NAMESPACE_SEPARATOR, path + below]

    def search(
        self,
        db: Any,
        where: str,
        args: list[Any],
        filter: Mapping[str, JSON] | None,
        limit: int,
        offset: int,
    ) -> list[Item]:
        if not filter:
            query = ITEMS.select(f"{where}{_ORDER} LIMIT {self.mark} OFFSET {self.mark}")
            return [ITEMS.load(r) for r in db.execute(query, [*args, limit, offset])]
        found: list[Item] = []
        skipped = 0
        with self.scan(db, ITEMS.select(where + _ORDER), args) as rows:
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


SQLITE_ITEMS = ItemSql("?", ITEMS.insert(), closing_scan)


class ItemsOnSQL(OnSQL):
    """The :class:`ItemStore`, for a store whose ``_read``/``_write`` run SQL of ``_sql``."""

    _sql: ItemSql

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
        put = self._sql.insert + _UPSERT
        # A lone surrogate in the value is kept as its JSON escape (runyard.model.dumps).
        await self._write(lambda c: c.execute(put, ITEMS.row(item)))

    async def get_item(self, owner: str, namespace: Namespace, key: str) -> Item | None:
        check_namespace(namespace)
        _check_key(key)
        query = ITEMS.select(f"WHERE {self._sql.key} AND {self._sql.live}")
        args = (owner, _path(namespace), key, now())
        row = await self._read(lambda db: db.execute(query, args).fetchone())
        return None if row is None else ITEMS.load(row)

    async def delete_item(self, owner: str, namespace: Namespace, key: str) -> None:
        check_namespace(namespace)
        _check_key(key)
        query = f"DELETE FROM items WHERE {self._sql.key}"
        args = (owner, _path(namespace), key)
        await self._write(lambda c: c.execute(query, args))

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
        sql = self._sql
        under, paths = sql.under(prefix)
        where = f"WHERE owner = {sql.mark} AND {sql.live}{under}"
        args: list[Any] = [owner, now(), *paths]
        return await self._read(lambda db: sql.search(db, where, args, filter, limit, offset))

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
        sql = self._sql
        under, paths = sql.under(literal)
        query = (
            f"SELECT DISTINCT namespace FROM items WHERE owner = {sql.mark} AND {sql.live}{under}"
        )
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
        query = f"DELETE FROM items WHERE expires_at <= {self._sql.mark}"

        def purge(c: Any) -> int:
            count: int = c.execute(query, (cutoff,)).rowcount
            return count

        return await self._write(purge)


class SQLiteItems(SQLiteBase, ItemsOnSQL):
    """The :class:`ItemStore` part of :class:`~runyard.store.SQLiteStore`."""

    _sql = SQLITE_ITEMS
