"""The SQL of threads, runs and events in a PostgreSQL store: :data:`PG_RUNS`.

PostgreSQL's dialect of :class:`~.queries.RunSql` (the statements are
written there, once): :mod:`.pg_schema`'s placeholders and ``ON CONFLICT``
clauses; a read that a write depends on locks its row (``FOR UPDATE``), so
two replicas changing one thread take turns; ``queue_seq`` breaks ties of
``created_at``. A batch is written in one pipeline (:func:`commit`).

These functions block. :class:`~runyard.store.postgres.PostgresStore` runs
them in a worker thread, each write inside one transaction.
"""

from __future__ import annotations

from typing import Any

import psycopg
import psycopg.errors

from ..model import JSON, Event, Run, Thread, ThreadStatus
from .interface import Batch
from .pg_checkpoints import PG_CHECKPOINTS
from .pg_connection import one_of, scan
from .pg_crons import PG_CRONS
from .pg_outbox import PG_OUTBOX
from .pg_schema import Conn, insert, quoted, update
from .queries import RunSql, run_marks
from .schema import EVENTS, RUNS, THREADS

PG_RUNS = RunSql(
    mark="%s",
    replace_thread=insert(THREADS, "replace"),
    add_run=insert(RUNS),
    keep_run=insert(RUNS, "ignore"),
    add_event=insert(EVENTS, "ignore"),
    update=update,
    start_thread=update(THREADS, "status", "metadata", "updated_at"),
    lock=" FOR UPDATE",
    skip_locked=" FOR UPDATE SKIP LOCKED",
    thread_order=("created_at", "thread_id"),
    run_order=("created_at", "queue_seq"),
    scan=scan,
    cursor=psycopg.Connection.cursor,
    one_of=one_of,
    checkpoints=PG_CHECKPOINTS,
    outbox=PG_OUTBOX,
    crons=PG_CRONS,
)

_LOCK_THREADS = THREADS.select("WHERE thread_id = ANY(%s) FOR UPDATE")


# The fastest way in for events. Measured on this 2-core machine, a transaction of 40
# events: 49k events/s by COPY against 18-22k by pipelined INSERTs, 9 against 27 us of
# psycopg's CPU an event; of 1,024: 84k against 25-37k, 2.4 against 18-22 us.
_COPY_EVENTS = f"COPY events ({quoted([c.name for c in EVENTS.columns])}) FROM STDIN"
# Events a batch holds at least for COPY to pay its two round trips; fewer go as
# INSERTs in the batch's pipeline (a run's first event, a slow agent's few).
COPY_FROM = 8


class EventsThere(Exception):
    """A COPY met an event already stored: the transaction is void, and the batch is to
    be written with INSERTs, which keep the first version of an event (COPY cannot)."""


def copy_events(c: Conn, events: list[Event]) -> None:
    """Write ``events`` by COPY (not in a pipeline); :class:`EventsThere` if one is."""
    try:
        with c.cursor().copy(_COPY_EVENTS) as copy:
            for event in events:
                copy.write_row(EVENTS.row(event))
    except psycopg.errors.UniqueViolation:
        raise EventsThere from None


def commit(c: Conn, batch: Batch) -> None:
    """Write ``batch`` in the order :class:`~runyard.store.Batch` documents, in a
    pipeline of the caller's: one read first (the metadata of the threads that new
    runs start on), then every write, sent together rather than one round trip each.
    """
    started = _started_threads(c, batch.created)
    PG_RUNS.write(c, batch, started)


def _started_threads(c: Conn, created: list[tuple[Run, Thread | None]]) -> list[dict[str, Any]]:
    """The update of each new run's thread: busy, its metadata merged with the run's
    graph and assistant (:func:`~.queries.run_marks`).

    SQLite merges in SQL (``json_patch``); here the merge is done in Python, on
    the rows locked first, so the JSON text keeps its keys' order and numbers.
    """
    metadata = {t.thread_id: t.metadata for _, t in created if t is not None}
    stored = [r.thread_id for r, _ in created if r.thread_id not in metadata]
    if stored:
        for row in c.execute(_LOCK_THREADS, (stored,)):
            thread = THREADS.load(row)
            metadata[thread.thread_id] = thread.metadata
    updates: list[dict[str, Any]] = []
    for run, _ in created:
        if run.thread_id not in metadata:
            continue  # no such thread: the UPDATE would change nothing
        merged = merge_patch(metadata[run.thread_id], run_marks(run))
        metadata[run.thread_id] = merged
        updates.append(
            THREADS.values(
                thread_id=run.thread_id,
                status=ThreadStatus.BUSY,
                metadata=merged,
                updated_at=run.created_at,
            )
        )
    return updates


def merge_patch(target: JSON, patch: JSON) -> JSON:
    """``patch`` applied to ``target`` as JSON Merge Patch (RFC 7396), SQLite's ``json_patch``."""
    if not isinstance(patch, dict):
        return patch
    merged = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = merge_patch(merged.get(key), value)
    return merged
