"""Persistence: the :class:`Store` interface and its SQLite implementation.

The supervisor and the event log talk to a :class:`Store`; nothing else does.
The package reads in this order:

- ``interface``: what the engine writes (:class:`Batch`, :class:`FinalState`,
  checkpoint rows; pure data) and the :class:`RunStore` protocol. :class:`Store`
  (below) is it with the parts for checkpoints, assistants and items.
- ``schema``: one description per table; the CREATE, INSERT, UPDATE and
  SELECT statements and the row mapping built from it; the migration.
- ``queries``: the SQL of threads, runs and events on one blocking
  connection, written once over a dialect (:class:`~.queries.RunSql`);
  ``runs``: the async operations over it, shared by both stores.
- ``retry``: the one bounded back-off for a busy database.
- ``connection``: the SQLite connections, their threads and lifetime.
- ``checkpoints``, ``assistants``, ``items``, ``crons``, ``outbox``: each part's
  protocol, its code for both stores over a dialect, and SQLite's dialect.
- ``sqlite``: :class:`SQLiteStore`, all the parts together.
- ``pg_schema``, ``pg_connection``, ``pg_queries``, ``pg_checkpoints``, ...,
  ``postgres``: the same for PostgreSQL (``runyard[postgres]``): the schema
  and migration, the connections, each part's dialect, :class:`PostgresStore`.
- ``pg_cluster``: what replicas share in PostgreSQL (leases, reaping,
  fencing, claims, cancel doorbells); :mod:`runyard.cluster` is its trio side.
- ``url``: :func:`store_for`, the store a ``--db`` names (a ``postgresql://``
  URL or a SQLite path), and :func:`redact`, that name as logs may show it.
"""

from typing import Protocol

from .assistants import AssistantStore
from .checkpoints import CheckpointStore
from .crons import CronStore
from .interface import (
    Batch,
    BlobRow,
    CheckpointRow,
    FinalState,
    RunStore,
    ThreadState,
    WriteRow,
)
from .items import ItemStore
from .outbox import OutboxStore
from .schema import SCHEMA_VERSION
from .sqlite import SQLiteStore
from .url import is_postgres, redact, store_for


class Store(RunStore, CheckpointStore, AssistantStore, ItemStore, CronStore, OutboxStore, Protocol):
    """Everything runyard keeps in a database: :class:`SQLiteStore` or ``PostgresStore``."""


__all__ = [
    "SCHEMA_VERSION",
    "Batch",
    "BlobRow",
    "CheckpointRow",
    "FinalState",
    "SQLiteStore",
    "Store",
    "ThreadState",
    "WriteRow",
    "is_postgres",
    "redact",
    "store_for",
]
