"""The database schema: one description per table, and the migration that applies them.

A :class:`Table` lists its columns in order, each with its SQL type and how a
field of the Python record is encoded into the row and decoded from it. The
CREATE statements, every INSERT, UPDATE and SELECT, and the mapping of a row
back to a :class:`~runyard.model.Run`, :class:`~runyard.model.Thread` or
:class:`~runyard.model.Event` are all built from these descriptions, so the
order of columns is written down once, here, and nowhere else depends on it.

The descriptions are always the newest schema. A fresh file is created
straight from them; an older file is brought up to date by :data:`UPGRADES`,
one step per schema version. Changing a description therefore means raising
:data:`SCHEMA_VERSION` and adding the step that alters existing files.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import operator
import sqlite3
from collections.abc import Callable
from typing import Any, Generic, Literal, TypeVar

import sqlite_utils

from ..errors import StoreUnusable
from ..model import (
    Assistant,
    CancelReason,
    Cron,
    Delivery,
    DeliveryAttempt,
    DeliveryState,
    ErrorInfo,
    Event,
    Item,
    MultitaskStrategy,
    Run,
    RunStatus,
    Thread,
    ThreadStatus,
    dumps,
)
from .interface import BlobRow, CheckpointRow, WriteRow

SCHEMA_VERSION = 3

R = TypeVar("R")
_PYTHON_TYPES: dict[str, type] = {"TEXT": str, "REAL": float, "INTEGER": int, "BLOB": bytes}
SQLValue = str | int | float | None


@dataclasses.dataclass(frozen=True, slots=True)
class Column:
    """One column: its name and SQL type, and how a record's field is stored in it."""

    name: str
    sql_type: Literal["TEXT", "REAL", "INTEGER", "BLOB"]
    field: str = ""  # the record's attribute, when it is not named like the column
    encode: Callable[[Any], SQLValue] | None = None  # field value -> row value (None: as is)
    decode: Callable[[Any], Any] | None = None  # row value -> field value (None: as is)
    not_null: bool = False

    @property
    def attribute(self) -> str:
        return self.field or self.name


@dataclasses.dataclass(frozen=True, slots=True)
class Table(Generic[R]):
    """One table: its columns in order, its keys, and the record a row becomes.

    Whole rows (:meth:`insert`, :meth:`select`) are tuples in column order,
    since events go through them by the thousand; both ends of each tuple
    are built here from the same columns. Updates name their values.
    """

    name: str
    record: Callable[..., R]  # called with every column's decoded value, by field name
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...]
    indexes: tuple[tuple[str, ...], ...] = ()
    without_rowid: bool = False
    _fields: tuple[str, ...] = dataclasses.field(init=False, repr=False)
    _by_field: dict[str, Column] = dataclasses.field(init=False, repr=False)
    _get: Callable[[Any], tuple[Any, ...]] = dataclasses.field(init=False, repr=False)
    _encoders: tuple[tuple[int, Callable[[Any], SQLValue]], ...] = dataclasses.field(
        init=False, repr=False
    )
    _decoders: tuple[tuple[str, Callable[[Any], Any]], ...] = dataclasses.field(
        init=False, repr=False
    )

    def __post_init__(self) -> None:
        assert len(self.columns) > 1, "attrgetter returns a bare value for one column"
        fields = tuple(c.attribute for c in self.columns)
        derived = {
            "_fields": fields,
            "_by_field": dict(zip(fields, self.columns, strict=True)),
            "_get": operator.attrgetter(*fields),
            "_encoders": tuple((i, c.encode) for i, c in enumerate(self.columns) if c.encode),
            "_decoders": tuple((c.attribute, c.decode) for c in self.columns if c.decode),
        }
        for name, value in derived.items():
            object.__setattr__(self, name, value)

    def create(self, db: sqlite_utils.Database) -> None:
        """Create the table and its indexes (sqlite-utils; raw SQL for WITHOUT ROWID)."""
        if self.without_rowid:
            definitions = [
                f'"{c.name}" {c.sql_type}' + (" NOT NULL" if c.not_null else "")
                for c in self.columns
            ]
            definitions.append(f"PRIMARY KEY ({_names(self.primary_key)})")
            db.execute(f'CREATE TABLE "{self.name}" ({", ".join(definitions)}) WITHOUT ROWID')
        else:
            db.create_table(
                self.name,
                {c.name: _PYTHON_TYPES[c.sql_type] for c in self.columns},
                pk=self.primary_key[0] if len(self.primary_key) == 1 else self.primary_key,
                not_null={c.name for c in self.columns if c.not_null},
            )
        for columns in self.indexes:
            db.table(self.name).create_index(list(columns))

    def insert(self, verb: str = "INSERT") -> str:
        """``verb`` (``INSERT OR IGNORE``, ...) of one whole row, given by :meth:`row`."""
        names = _names([c.name for c in self.columns])
        marks = ", ".join("?" * len(self.columns))
        return f'{verb} INTO "{self.name}" ({names}) VALUES ({marks})'

    def row(self, record: R) -> tuple[SQLValue, ...]:
        """The row that stores ``record``, for :meth:`insert`."""
        values = self._get(record)
        if not self._encoders:
            return values
        encoded = list(values)
        for i, encode in self._encoders:
            encoded[i] = encode(encoded[i])
        return tuple(encoded)

    def select(self, clauses: str = "") -> str:
        """Whole rows, for :meth:`load`, of those that ``clauses`` (``WHERE ...``) pick."""
        names = _names([c.name for c in self.columns])
        return f'SELECT {names} FROM "{self.name}" {clauses}'.rstrip()

    def load(self, row: tuple[Any, ...]) -> R:
        """The record that a row of :meth:`select` stores."""
        fields = dict(zip(self._fields, row))  # noqa: B905 (select() lists every column)
        for field, decode in self._decoders:
            fields[field] = decode(fields[field])
        return self.record(**fields)

    def update(self, *fields: str) -> str:
        """Set ``fields`` in the row with a given primary key; values from :meth:`values`."""
        names = [self._by_field[f].name for f in fields]
        assignments = ", ".join(f'"{name}" = :{name}' for name in names)
        key = " AND ".join(f'"{name}" = :{name}' for name in self.primary_key)
        return f'UPDATE "{self.name}" SET {assignments} WHERE {key}'

    def values(self, **fields: Any) -> dict[str, SQLValue]:
        """Some fields of a record, encoded and keyed by column name, for :meth:`update`."""
        encoded: dict[str, SQLValue] = {}
        for field, value in fields.items():
            column = self._by_field[field]
            encoded[column.name] = value if column.encode is None else column.encode(value)
        return encoded


def _names(names: tuple[str, ...] | list[str]) -> str:
    return ", ".join(f'"{name}"' for name in names)


def _json(name: str, *, field: str = "") -> Column:
    return Column(name, "TEXT", field=field, encode=dumps, decode=json.loads)


def _enum(name: str, kind: type[enum.StrEnum]) -> Column:
    return Column(name, "TEXT", encode=str, decode=kind)


def _text_or_null(value: enum.StrEnum | None) -> str | None:
    return None if value is None else str(value)


def _cancel_reason(text: str | None) -> CancelReason | None:
    return CancelReason(text) if text else None


def _error_text(error: ErrorInfo | None) -> str | None:
    return None if error is None else dumps(error.to_json())


# A namespace path as one TEXT value; the separator (unit separator) is refused in labels.
NAMESPACE_SEPARATOR = "\x1f"


def _path(namespace: tuple[str, ...]) -> str:
    return NAMESPACE_SEPARATOR.join(namespace)


def _unpath(text: str) -> tuple[str, ...]:
    return tuple(text.split(NAMESPACE_SEPARATOR)) if text else ()


def _error_info(text: str | None) -> ErrorInfo | None:
    data = json.loads(text) if text else None
    return ErrorInfo(**data) if data else None


THREADS = Table(
    "threads",
    Thread,
    (
        Column("thread_id", "TEXT"),
        Column("owner", "TEXT"),
        Column("created_at", "REAL"),
        Column("updated_at", "REAL"),
        _json("metadata"),
        _enum("status", ThreadStatus),
        _json("state", field="values"),
        _json("interrupts"),  # schema 2
    ),
    primary_key=("thread_id",),
)

RUNS = Table(
    "runs",
    Run,
    (
        Column("run_id", "TEXT"),
        Column("thread_id", "TEXT"),
        Column("owner", "TEXT"),
        Column("assistant_id", "TEXT"),
        Column("created_at", "REAL"),
        Column("updated_at", "REAL"),
        _enum("status", RunStatus),
        Column("cancel_reason", "TEXT", encode=_text_or_null, decode=_cancel_reason),
        Column("error", "TEXT", encode=_error_text, decode=_error_info),
        _json("output"),
        _json("metadata"),
        _json("kwargs"),
        _enum("multitask_strategy", MultitaskStrategy),
        Column("attempt", "INTEGER"),
    ),
    primary_key=("run_id",),
    indexes=(("thread_id", "created_at"), ("status",)),
)

EVENTS = Table(
    "events",
    Event.from_text,
    (
        Column("run_id", "TEXT", not_null=True),
        Column("seq", "INTEGER", not_null=True),
        Column("event", "TEXT", not_null=True),
        Column("data", "TEXT", not_null=True),  # JSON text, stored as the event carries it
    ),
    primary_key=("run_id", "seq"),
    without_rowid=True,
)

# -- schema 2: LangGraph checkpoints, assistants, the memory store --------------------

CHECKPOINTS = Table(
    "checkpoints",
    CheckpointRow,
    (
        Column("thread_id", "TEXT", not_null=True),
        Column("checkpoint_ns", "TEXT", not_null=True),
        Column("checkpoint_id", "TEXT", not_null=True),
        Column("parent_checkpoint_id", "TEXT"),
        Column("run_id", "TEXT"),
        Column("type", "TEXT"),
        Column("checkpoint", "BLOB"),
        _json("metadata"),
        Column("created_at", "REAL"),
    ),
    primary_key=("thread_id", "checkpoint_ns", "checkpoint_id"),
    indexes=(("run_id",),),
)

CHECKPOINT_BLOBS = Table(
    "checkpoint_blobs",
    BlobRow,
    (
        Column("thread_id", "TEXT", not_null=True),
        Column("checkpoint_ns", "TEXT", not_null=True),
        Column("channel", "TEXT", not_null=True),
        Column("version", "TEXT", not_null=True),
        Column("type", "TEXT"),
        Column("blob", "BLOB"),
    ),
    primary_key=("thread_id", "checkpoint_ns", "channel", "version"),
)

CHECKPOINT_WRITES = Table(
    "checkpoint_writes",
    WriteRow,
    (
        Column("thread_id", "TEXT", not_null=True),
        Column("checkpoint_ns", "TEXT", not_null=True),
        Column("checkpoint_id", "TEXT", not_null=True),
        Column("task_id", "TEXT", not_null=True),
        Column("idx", "INTEGER", not_null=True),
        Column("channel", "TEXT"),
        Column("type", "TEXT"),
        Column("blob", "BLOB"),
        Column("task_path", "TEXT"),
    ),
    primary_key=("thread_id", "checkpoint_ns", "checkpoint_id", "task_id", "idx"),
)

ASSISTANTS = Table(
    "assistants",
    Assistant,
    (
        Column("assistant_id", "TEXT"),
        Column("owner", "TEXT"),
        Column("graph_id", "TEXT"),
        Column("name", "TEXT"),
        Column("description", "TEXT"),
        _json("config"),
        _json("context"),
        _json("metadata"),
        Column("version", "INTEGER"),
        Column("created_at", "REAL"),
        Column("updated_at", "REAL"),
    ),
    primary_key=("assistant_id",),
    indexes=(("owner", "graph_id"),),
)

# Every version of an assistant, the latest included (its row in ASSISTANTS says which).
ASSISTANT_VERSIONS = Table(
    "assistant_versions",
    Assistant,
    ASSISTANTS.columns,
    primary_key=("assistant_id", "version"),
)

ITEMS = Table(
    "items",
    Item,
    (
        Column("owner", "TEXT", not_null=True),
        Column("namespace", "TEXT", not_null=True, encode=_path, decode=_unpath),
        Column("key", "TEXT", not_null=True),
        _json("value"),
        Column("created_at", "REAL"),
        Column("updated_at", "REAL"),
        Column("expires_at", "REAL"),
    ),
    primary_key=("owner", "namespace", "key"),
)

# -- schema 3: crons, the webhook outbox ------------------------------------------------


def _flag(value: bool) -> int:
    return int(value)


CRONS = Table(
    "crons",
    Cron,
    (
        Column("cron_id", "TEXT"),
        Column("owner", "TEXT"),
        Column("assistant_id", "TEXT"),
        Column("thread_id", "TEXT"),
        Column("schedule", "TEXT"),
        Column("timezone", "TEXT"),
        _json("payload"),
        _json("metadata"),
        Column("on_run_completed", "TEXT"),
        Column("end_time", "REAL"),
        Column("enabled", "INTEGER", encode=_flag, decode=bool),
        Column("next_run_at", "REAL"),
        Column("claim", "TEXT"),
        Column("claimed_at", "REAL"),
        Column("created_at", "REAL"),
        Column("updated_at", "REAL"),
    ),
    primary_key=("cron_id",),
    indexes=(("next_run_at",), ("owner", "created_at")),
)

# The outbox: one row per run with a webhook, written with the run's final state.
WEBHOOKS = Table(
    "webhooks",
    Delivery,
    (
        Column("run_id", "TEXT"),
        Column("thread_id", "TEXT"),
        Column("owner", "TEXT"),
        Column("url", "TEXT"),
        _json("body"),
        Column("created_at", "REAL"),
        Column("next_attempt_at", "REAL"),
        Column("updated_at", "REAL"),
        Column("attempts", "INTEGER"),
        _enum("state", DeliveryState),
    ),
    primary_key=("run_id",),
    indexes=(("state", "next_attempt_at"),),
)

WEBHOOK_ATTEMPTS = Table(
    "webhook_attempts",
    DeliveryAttempt,
    (
        Column("run_id", "TEXT", not_null=True),
        Column("attempt", "INTEGER", not_null=True),
        Column("at", "REAL"),
        Column("outcome", "TEXT"),
        Column("status_code", "INTEGER"),
        Column("seconds", "REAL"),
    ),
    primary_key=("run_id", "attempt"),
    without_rowid=True,
)

TABLES = (
    THREADS,
    RUNS,
    EVENTS,
    CHECKPOINTS,
    CHECKPOINT_BLOBS,
    CHECKPOINT_WRITES,
    ASSISTANTS,
    ASSISTANT_VERSIONS,
    ITEMS,
    CRONS,
    WEBHOOKS,
    WEBHOOK_ATTEMPTS,
)

# Not described above: it must exist before the version is known, and maps to no record.
_META = "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)"


def _upgrade_1(conn: sqlite3.Connection) -> None:
    """Schema 2: threads keep their pending interrupts; checkpoints, assistants, items."""
    conn.execute("ALTER TABLE threads ADD COLUMN interrupts TEXT DEFAULT '{}'")
    db = sqlite_utils.Database(conn)
    for table in TABLES[TABLES.index(CHECKPOINTS) : TABLES.index(CRONS)]:
        table.create(db)


def _upgrade_2(conn: sqlite3.Connection) -> None:
    """Schema 3: crons and the webhook outbox."""
    db = sqlite_utils.Database(conn)
    for table in TABLES[TABLES.index(CRONS) :]:
        table.create(db)


# UPGRADES[n - 1] brings a file from schema n to n + 1.
UPGRADES: list[Callable[[sqlite3.Connection], None]] = [_upgrade_1, _upgrade_2]
assert len(UPGRADES) == SCHEMA_VERSION - 1


def migrate(conn: sqlite3.Connection, path: str) -> None:
    """Bring the file at ``path`` to :data:`SCHEMA_VERSION`, in one transaction.

    Raises :class:`StoreUnusable`, having changed nothing, for a file that holds
    tables runyard did not create or that a newer runyard wrote.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute(_META)
        row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        version = int(row[0]) if row else 0
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if version == 0 and tables - {"meta"}:
            raise StoreUnusable(
                f"{path} holds tables that runyard did not create; it was left untouched"
            )
        if version > SCHEMA_VERSION:
            raise StoreUnusable(
                f"{path} was written by a newer runyard (schema {version}, this one"
                f" knows {SCHEMA_VERSION}); upgrade runyard or use another --db"
            )
        if version == 0:
            db = sqlite_utils.Database(conn)
            for table in TABLES:
                table.create(db)
        else:
            for upgrade in UPGRADES[version - 1 :]:
                upgrade(conn)
        conn.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', ?)",
            (str(SCHEMA_VERSION),),
        )
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
