"""PostgreSQL's dialect of the schema: the same table descriptions, its types and statements.

The tables are those of :mod:`.schema`, column for column, so a record is
encoded into a row and decoded from it by the same :class:`~.schema.Table`
on either database (``Table.row``, ``Table.select``, ``Table.load``). What
the two dialects write differently is here and nowhere else:

- types: ``TEXT`` is ``text COLLATE "C"``, so comparisons and ``ORDER BY``
  go by code point as SQLite's do (the items' namespace ranges and the
  checkpoints' ``before`` depend on it) whatever the database's default
  collation; ``REAL`` is ``double precision``, ``INTEGER`` ``bigint``,
  ``BLOB`` ``bytea``. JSON stays ``text``: an event's data is stored as the
  event carries it, and ``jsonb`` would reorder keys and rewrite numbers.
- statements: ``%s`` and ``%(name)s`` placeholders; ``INSERT OR IGNORE`` and
  ``INSERT OR REPLACE`` become ``ON CONFLICT`` clauses (:func:`insert`); NULL
  sorts first as in SQLite (:func:`order`).
- what only PostgreSQL has: ``runs.queue_seq``, an identity that orders a
  thread's runs as they were written (the planned queue of replicas claims
  them in that order; today it breaks ties of ``created_at``).
- the migration (:func:`migrate`): the version lives in ``meta`` as in a
  SQLite file and counts the same descriptions, so schema N is the same
  tables on both; a PostgreSQL database starts at :data:`FIRST_VERSION`.
  Replicas opening one database at once take turns on an advisory lock.
- the cluster's part (:data:`CLUSTER_TABLES`), created only when a store
  opens as a replica (``cluster=True``): the ``replicas`` table, the queue's
  columns of ``runs`` and the index that keeps one running run per thread.
  Its version is a ``meta`` row of its own (``cluster_version``), so SQLite's
  schema and :data:`SCHEMA_VERSION` stay as they are; a database a newer
  runyard clustered is refused by every store, replica or not.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import psycopg

from ..errors import StoreUnusable
from .schema import SCHEMA_VERSION, TABLES, Table

Conn = psycopg.Connection[tuple[Any, ...]]

_TYPES = {
    "TEXT": 'text COLLATE "C"',
    "REAL": "double precision",
    "INTEGER": "bigint",
    "BLOB": "bytea",
}
# Columns that only the PostgreSQL tables have, after the described ones.
_EXTRA_COLUMNS = {"runs": ('"queue_seq" bigint GENERATED ALWAYS AS IDENTITY',)}
# The schema version PostgreSQL databases were first created at.
FIRST_VERSION = 3
# The key of the advisory lock that one replica's migration holds.
MIGRATION_LOCK = 0x72756E79617264  # "runyard"
# How long opening waits for another replica's migration (ms).
MIGRATION_WAIT_MS = 60_000


def quoted(names: tuple[str, ...] | list[str]) -> str:
    """Column names for a statement: quoted, comma-separated."""
    return ", ".join(f'"{name}"' for name in names)


def order(expression: str, *, descending: bool = False) -> str:
    """An ``ORDER BY`` term sorting NULL first, as SQLite does (PostgreSQL sorts it last)."""
    return f"{expression} DESC NULLS LAST" if descending else f"{expression} ASC NULLS FIRST"


def create(table: Table[Any]) -> list[str]:
    """The statements that create ``table`` and its indexes."""
    definitions = [
        f'"{c.name}" {_TYPES[c.sql_type]}' + (" NOT NULL" if c.not_null else "")
        for c in table.columns
    ]
    definitions.extend(_EXTRA_COLUMNS.get(table.name, ()))
    definitions.append(f"PRIMARY KEY ({quoted(table.primary_key)})")
    statements = [f'CREATE TABLE "{table.name}" ({", ".join(definitions)})']
    for columns in table.indexes:
        # Named as sqlite-utils names them, so both databases list the same indexes.
        index = f"idx_{table.name}_{'_'.join(columns)}"
        statements.append(f'CREATE INDEX "{index}" ON "{table.name}" ({quoted(columns)})')
    return statements


def insert(table: Table[Any], on_conflict: Literal["fail", "ignore", "replace"] = "fail") -> str:
    """An INSERT of one whole row (``Table.row``); a row with the same key fails it, is
    left as it is (SQLite's ``INSERT OR IGNORE``) or is replaced (``INSERT OR REPLACE``)."""
    names = [c.name for c in table.columns]
    marks = ", ".join(["%s"] * len(names))
    sql = f'INSERT INTO "{table.name}" ({quoted(names)}) VALUES ({marks})'
    return sql + conflict(table, on_conflict)


def conflict(table: Table[Any], on_conflict: Literal["fail", "ignore", "replace"]) -> str:
    """The ``ON CONFLICT`` clause of :func:`insert` (also for ``INSERT ... SELECT``)."""
    if on_conflict == "ignore":
        return " ON CONFLICT DO NOTHING"
    if on_conflict == "replace":
        others = [c.name for c in table.columns if c.name not in table.primary_key]
        assignments = ", ".join(f'"{name}" = EXCLUDED."{name}"' for name in others)
        return f" ON CONFLICT ({quoted(table.primary_key)}) DO UPDATE SET {assignments}"
    return ""


def update(table: Table[Any], *fields: str) -> str:
    """Set ``fields`` in the row with a given primary key; values from ``Table.values``."""
    columns = {c.attribute: c.name for c in table.columns}
    assignments = ", ".join(f'"{columns[f]}" = %({columns[f]})s' for f in fields)
    key = " AND ".join(f'"{name}" = %({name})s' for name in table.primary_key)
    return f'UPDATE "{table.name}" SET {assignments} WHERE {key}'


# -- the migration ------------------------------------------------------------------

_META = 'CREATE TABLE IF NOT EXISTS meta (key text COLLATE "C" PRIMARY KEY, value text COLLATE "C")'
_TABLES = "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"

# UPGRADES[n] brings a database from schema n to n + 1, for n from FIRST_VERSION on.
UPGRADES: dict[int, Callable[[Conn], None]] = {}
assert set(UPGRADES) == set(range(FIRST_VERSION, SCHEMA_VERSION)), "a step per version"

# -- the cluster's part: replicas, their leases, the shared queue ---------------------

# The version of the cluster's part; counted apart from SCHEMA_VERSION (SQLite has none).
CLUSTER_VERSION = 2
# The SQLSTATE the fence raises when a replica's lease is gone (a class of runyard's own).
FENCE_SQLSTATE = "RY001"
# The fence every write transaction of a replica runs (pg_cluster): it locks the
# replica's row to the end of the transaction, so no reaper deletes it in between,
# has a stalled transaction ended after a lease of idleness, and raises when the
# row is gone. An error rather than an empty answer: it can be sent in one pipeline
# with the batch's writes and their COMMIT, which it then aborts.
_FENCE_FUNCTION = (
    "CREATE FUNCTION runyard_fence(replica text) RETURNS void LANGUAGE plpgsql AS $$"
    " DECLARE lease double precision;"
    " BEGIN"
    " SELECT lease_seconds INTO lease FROM replicas WHERE replica_id = replica FOR KEY SHARE;"
    " IF NOT FOUND THEN"
    f" RAISE EXCEPTION 'lease lost' USING ERRCODE = '{FENCE_SQLSTATE}';"
    " END IF;"
    " PERFORM set_config('idle_in_transaction_session_timeout',"
    " (lease * 1000)::bigint::text, true);"
    " END $$"
)
CLUSTER_TABLES = (
    # One row per process start; the lease is on the database's clock.
    'CREATE TABLE "replicas" ('
    ' "replica_id" text COLLATE "C" PRIMARY KEY,'
    ' "host" text COLLATE "C" NOT NULL,'  # host name and pid, for operators
    ' "started_at" timestamptz NOT NULL,'
    ' "heartbeat_at" timestamptz NOT NULL,'
    ' "lease_seconds" double precision NOT NULL,'
    ' "lease_until" timestamptz NOT NULL)',
    # available_at: when a pending run may start (after_seconds), on the database's
    # clock in epoch seconds; replica_id: the replica that executes it, or keeps it
    # until its turn (NULL: any replica may claim it); cancel_requested: the reason
    # of the first cancel asked for, until the run ends.
    'ALTER TABLE "runs"'
    ' ADD COLUMN "available_at" double precision NOT NULL DEFAULT extract(epoch FROM now()),'
    ' ADD COLUMN "replica_id" text COLLATE "C",'
    ' ADD COLUMN "cancel_requested" text COLLATE "C"',
    # One running run per thread across every replica, whatever races.
    'CREATE UNIQUE INDEX "runs_one_running_per_thread" ON "runs" ("thread_id")'
    " WHERE status = 'running'",
    # A thread's line, and a replica's runs: only unfinished runs are ever looked up.
    'CREATE INDEX "runs_line" ON "runs" ("thread_id", "queue_seq")'
    " WHERE status IN ('pending', 'running')",
    'CREATE INDEX "runs_replica" ON "runs" ("replica_id")'
    " WHERE status IN ('pending', 'running')",
    _FENCE_FUNCTION,
)


# CLUSTER_UPGRADES[n] brings the cluster's part from version n to n + 1, from 1 on.
def _fence_as_a_function(conn: Conn) -> None:
    conn.execute(_FENCE_FUNCTION)


CLUSTER_UPGRADES: dict[int, Callable[[Conn], None]] = {1: _fence_as_a_function}
assert set(CLUSTER_UPGRADES) == set(range(1, CLUSTER_VERSION)), "a step per version"


def migrate(conn: Conn, name: str, *, cluster: bool = False) -> None:
    """Bring the database to :data:`SCHEMA_VERSION`, in one transaction; with
    ``cluster``, its cluster's part to :data:`CLUSTER_VERSION` too.

    ``name`` is how messages call the database (no password). Raises
    :class:`StoreUnusable`, having changed nothing, for a database that holds
    tables runyard did not create or that a newer runyard wrote.
    """
    with conn.transaction():
        conn.execute(f"SET LOCAL lock_timeout = {MIGRATION_WAIT_MS}")
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
        conn.execute(_META)
        row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        version = _version(row[0], name) if row else 0
        tables = {r[0] for r in conn.execute(_TABLES)}
        if version == 0 and tables - {"meta"}:
            raise StoreUnusable(
                f"{name} holds tables that runyard did not create; it was left untouched"
            )
        if version > SCHEMA_VERSION:
            raise StoreUnusable(
                f"{name} was written by a newer runyard (schema {version}, this one"
                f" knows {SCHEMA_VERSION}); upgrade runyard or use another --db"
            )
        row = conn.execute("SELECT value FROM meta WHERE key = 'cluster_version'").fetchone()
        clustered = _version(row[0], name, first=1) if row else 0
        if clustered > CLUSTER_VERSION:
            raise StoreUnusable(
                f"{name} was clustered by a newer runyard (cluster schema {clustered},"
                f" this one knows {CLUSTER_VERSION}); upgrade runyard or use another --db"
            )
        if version == 0:
            for table in TABLES:
                for statement in create(table):
                    conn.execute(statement)
        else:
            for step in range(version, SCHEMA_VERSION):
                UPGRADES[step](conn)
        _set(conn, "schema_version", SCHEMA_VERSION)
        if clustered == 0 and cluster:
            for statement in CLUSTER_TABLES:
                conn.execute(statement)
        elif clustered:
            for step in range(clustered, CLUSTER_VERSION):
                CLUSTER_UPGRADES[step](conn)
        if clustered or cluster:
            _set(conn, "cluster_version", CLUSTER_VERSION)


def _set(conn: Conn, key: str, version: int) -> None:
    conn.execute(
        "INSERT INTO meta (key, value) VALUES (%s, %s)"
        " ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
        (key, str(version)),
    )


def _version(text: str | None, name: str, *, first: int = FIRST_VERSION) -> int:
    """A version ``meta`` holds; one runyard never wrote is refused."""
    if text is not None and text.isdigit() and int(text) >= first:
        return int(text)
    raise StoreUnusable(f"{name} holds an unknown schema version; it was left untouched")
