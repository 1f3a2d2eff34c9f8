"""The memory store's items in a PostgreSQL store: the :class:`~.items.ItemStore` part.

The same rules as :mod:`.items`, checked by the same functions before any
I/O: an owner sees only its items, a ``ttl`` expires an item, a search's
``filter`` is matched in Python on the decoded values as the rows stream out
newest first. Namespaces are one ``text`` value each, labels joined by the
unit separator; the ``"C"`` collation of the column makes the range that
picks a prefix's namespaces the same as in SQLite.
"""

from __future__ import annotations

from .items import ItemsOnSQL, ItemSql
from .pg_connection import PostgresBase, scan
from .pg_schema import insert
from .schema import ITEMS


class PostgresItems(PostgresBase, ItemsOnSQL):
    """The :class:`~.items.ItemStore` part of a PostgreSQL store."""

    _sql = ItemSql("%s", insert(ITEMS), scan)
