"""The memory store's items: JSON documents under namespace paths, per owner.

(Being built: the protocol and the SQLite part land with the store API.)
"""

from __future__ import annotations

from typing import Protocol

from .connection import SQLiteBase


class ItemStore(Protocol):
    """Putting, getting, searching and deleting items; listing namespaces."""


class SQLiteItems(SQLiteBase):
    """The :class:`ItemStore` part of :class:`~runyard.store.SQLiteStore`."""
