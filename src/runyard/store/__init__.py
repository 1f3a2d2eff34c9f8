"""Persistence: the :class:`Store` interface and its SQLite implementation.

The supervisor and the event log talk to a :class:`Store`; nothing else does.
The package reads in this order:

- ``interface``: the :class:`Store` protocol and what it writes (:class:`Batch`,
  :class:`FinalState`); pure data.
- ``schema``: one description per table; the CREATE, INSERT, UPDATE and
  SELECT statements and the row mapping built from it; the migration.
- ``queries``: the SQL behind each operation, on one blocking connection.
- ``retry``: the one bounded back-off for a busy database.
- ``sqlite``: :class:`SQLiteStore`, the connections, their threads and lifetime.
"""

from .interface import Batch, FinalState, Store
from .schema import SCHEMA_VERSION
from .sqlite import SQLiteStore

__all__ = ["SCHEMA_VERSION", "Batch", "FinalState", "SQLiteStore", "Store"]
