"""The SQL behind each :class:`~runyard.store.Store` operation, on one connection.

Every statement is built from the table descriptions in :mod:`.schema`, so no
query depends on the order of columns and each value is encoded and decoded
in one place. Reads and writes both use plain :mod:`sqlite3`: the descriptions
already give every statement, writes run in our own ``BEGIN IMMEDIATE``
transactions, and sqlite-utils would only add a savepoint around each call.

These functions block. :class:`~runyard.store.SQLiteStore` runs them in a
worker thread, each write inside one transaction that it opens and closes.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from typing import Any

from ..model import JSON, Event, Run, RunStatus, Thread, ThreadStatus, dumps
from . import checkpoints, crons, outbox
from .interface import Batch, FinalState, ThreadState
from .schema import EVENTS, RUNS, THREADS

_PUT_THREAD = THREADS.insert("INSERT OR REPLACE")
_ADD_RUN = RUNS.insert()
_ADD_EVENT = EVENTS.insert("INSERT OR IGNORE")
_MARK_THREAD = THREADS.update("status", "updated_at")
# A run starting on a thread marks it busy and merges its graph and assistant into
# the thread's metadata (front ends find a graph's threads by them).
_START_THREAD = (
    'UPDATE "threads" SET "status" = :status, "updated_at" = :updated_at,'
    ' "metadata" = json_patch("metadata", :merged) WHERE "thread_id" = :thread_id'
)
_MARK_RUN = RUNS.update("status", "updated_at")
_NEW_ATTEMPT = RUNS.update("attempt", "updated_at")
_FINISH_RUN = RUNS.update("status", "cancel_reason", "error", "output", "updated_at")
_FINISH_THREAD = THREADS.update("status", "values", "updated_at")
_FINISH_GRAPH_THREAD = THREADS.update("status", "values", "interrupts", "updated_at")
_PATCH_THREAD = THREADS.update("metadata", "updated_at")
_MISSING = object()

# -- threads ------------------------------------------------------------------


def put_thread(c: sqlite3.Connection, thread: Thread) -> None:
    c.execute(_PUT_THREAD, THREADS.row(thread))


def get_thread(db: sqlite3.Connection, thread_id: str) -> Thread | None:
    row = db.execute(THREADS.select("WHERE thread_id = ?"), (thread_id,)).fetchone()
    return None if row is None else THREADS.load(row)


def thread_owner(db: sqlite3.Connection, thread_id: str) -> str | None:
    row = db.execute("SELECT owner FROM threads WHERE thread_id = ?", (thread_id,)).fetchone()
    return None if row is None else str(row[0])


def search_threads(
    db: sqlite3.Connection,
    *,
    owner: str,
    metadata: dict[str, JSON],
    status: str | None,
    limit: int,
    offset: int,
    values: dict[str, JSON] | None = None,
) -> list[Thread]:
    """Newest first; metadata and values are matched here, key by key, on the decoded values."""
    found: list[Thread] = []
    skipped = 0
    for thread in _matching(db, owner, metadata, values or {}, status):
        if skipped < offset:
            skipped += 1
            continue
        found.append(thread)
        if len(found) >= limit:
            break
    return found


def count_threads(
    db: sqlite3.Connection,
    *,
    owner: str,
    metadata: dict[str, JSON],
    values: dict[str, JSON],
    status: str | None,
) -> int:
    return sum(1 for _ in _matching(db, owner, metadata, values, status))


def _matching(
    db: sqlite3.Connection,
    owner: str,
    metadata: dict[str, JSON],
    values: dict[str, JSON],
    status: str | None,
) -> Iterator[Thread]:
    """The owner's threads, newest first, whose metadata and values hold every pair given."""
    where, args = "owner = ?", [owner]
    if status is not None:
        where += " AND status = ?"
        args.append(status)
    query = THREADS.select(f"WHERE {where} ORDER BY created_at DESC")
    with contextlib.closing(db.execute(query, args)) as rows:
        for row in rows:
            thread = THREADS.load(row)
            if _holds(thread.metadata, metadata) and _holds(thread.values, values):
                yield thread


def _holds(found: JSON, wanted: dict[str, JSON]) -> bool:
    if not wanted:
        return True
    return isinstance(found, dict) and all(found.get(k, _MISSING) == v for k, v in wanted.items())


def patch_thread(
    c: sqlite3.Connection, thread_id: str, metadata: dict[str, JSON], updated_at: float
) -> Thread | None:
    """Merge ``metadata`` into the thread's, key by key (a shallow merge, as LangGraph's)."""
    thread = get_thread(c, thread_id)
    if thread is None:
        return None
    thread.metadata = {**thread.metadata, **metadata}
    thread.updated_at = updated_at
    c.execute(
        _PATCH_THREAD,
        THREADS.values(thread_id=thread_id, metadata=thread.metadata, updated_at=updated_at),
    )
    return thread


def set_thread_state(
    c: sqlite3.Connection,
    thread_id: str,
    state: ThreadState,
    status: ThreadStatus,
    updated_at: float,
) -> None:
    """A graph thread's values, pending interrupts and status, after its state was updated."""
    c.execute(
        _FINISH_GRAPH_THREAD,
        THREADS.values(
            thread_id=thread_id,
            status=status,
            values=state.values,
            interrupts=state.interrupts,
            updated_at=updated_at,
        ),
    )


def delete_thread(c: sqlite3.Connection, thread_id: str) -> None:
    c.execute(
        "DELETE FROM events WHERE run_id IN (SELECT run_id FROM runs WHERE thread_id = ?)",
        (thread_id,),
    )
    c.execute("DELETE FROM runs WHERE thread_id = ?", (thread_id,))
    c.execute("DELETE FROM threads WHERE thread_id = ?", (thread_id,))
    checkpoints.delete_for_thread(c, thread_id)
    crons.delete_for_thread(c, thread_id)


# -- runs ---------------------------------------------------------------------


def get_run(db: sqlite3.Connection, run_id: str) -> Run | None:
    row = db.execute(RUNS.select("WHERE run_id = ?"), (run_id,)).fetchone()
    return None if row is None else RUNS.load(row)


def list_runs(
    db: sqlite3.Connection,
    thread_id: str | None,
    *,
    status: str | None,
    limit: int,
    offset: int,
    owner: str | None,
) -> list[Run]:
    clauses: list[str] = []
    args: list[Any] = []
    for column, value in (("thread_id", thread_id), ("status", status), ("owner", owner)):
        if value is not None:
            clauses.append(f"{column} = ?")
            args.append(value)
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    query = RUNS.select(f"{where} ORDER BY created_at DESC LIMIT ? OFFSET ?")
    return [RUNS.load(row) for row in db.execute(query, [*args, limit, offset])]


def unfinished_runs(db: sqlite3.Connection) -> list[Run]:
    query = RUNS.select("WHERE status IN ('pending', 'running') ORDER BY created_at")
    return [RUNS.load(row) for row in db.execute(query)]


def delete_run(c: sqlite3.Connection, run_id: str) -> None:
    c.execute("DELETE FROM events WHERE run_id = ?", (run_id,))
    c.execute("DELETE FROM runs WHERE run_id = ?", (run_id,))


def new_attempt(c: sqlite3.Connection, run_id: str, attempt: int, at: float) -> None:
    c.execute(_NEW_ATTEMPT, RUNS.values(run_id=run_id, attempt=attempt, updated_at=at))


def purge_some(c: sqlite3.Connection, before: float, limit: int) -> int:
    """Delete up to ``limit`` finished runs updated before ``before``; return how many."""
    ids = [
        row[0]
        for row in c.execute(
            "SELECT run_id FROM runs WHERE status NOT IN ('pending', 'running')"
            " AND updated_at < ? LIMIT ?",
            (before, limit),
        )
    ]
    marks = ",".join("?" * len(ids))
    if ids:
        c.execute(f"DELETE FROM events WHERE run_id IN ({marks})", ids)
        c.execute(f"DELETE FROM runs WHERE run_id IN ({marks})", ids)
    outbox.SQLITE_OUTBOX.purge_some(c, before)
    return len(ids)


# -- events -------------------------------------------------------------------


def read_events(db: sqlite3.Connection, run_id: str, after_seq: int, limit: int) -> list[Event]:
    query = EVENTS.select("WHERE run_id = ? AND seq > ? ORDER BY seq LIMIT ?")
    return [EVENTS.load(row) for row in db.execute(query, (run_id, after_seq, limit))]


def last_seq(db: sqlite3.Connection, run_id: str) -> int:
    row = db.execute("SELECT MAX(seq) FROM events WHERE run_id = ?", (run_id,)).fetchone()
    return -1 if row[0] is None else int(row[0])


# -- one batch ------------------------------------------------------------------


def commit(c: sqlite3.Connection, batch: Batch) -> None:
    """Write ``batch`` in the order :class:`~runyard.store.Batch` documents."""
    c.executemany(_PUT_THREAD, [THREADS.row(t) for _, t in batch.created if t is not None])
    c.executemany(_ADD_RUN, [RUNS.row(r) for r, _ in batch.created])
    crons.fired(c, [r for r, _ in batch.created])
    c.executemany(
        _START_THREAD,
        [
            {
                **THREADS.values(
                    thread_id=r.thread_id, status=ThreadStatus.BUSY, updated_at=r.created_at
                ),
                "merged": dumps(_run_marks(r)),
            }
            for r, _ in batch.created
        ],
    )
    c.executemany(_ADD_EVENT, [EVENTS.row(e) for e in batch.events])
    c.executemany(
        _MARK_RUN,
        [
            RUNS.values(run_id=run_id, status=RunStatus.RUNNING, updated_at=at)
            for run_id, at in batch.running
        ],
    )
    checkpoints.write_checkpoints(c, batch.checkpoints)
    checkpoints.write_writes(c, batch.writes)
    for final in batch.finals:
        _finish(c, final)


def _finish(c: sqlite3.Connection, f: FinalState) -> None:
    """Write the end of one run and, unless ``thread_status`` is None, its thread's state."""
    if f.delete:
        delete_run(c, f.run_id)
        checkpoints.delete_for_runs(c, [f.run_id])
    else:
        c.executemany(_ADD_EVENT, [EVENTS.row(e) for e in f.events])
        run = RUNS.values(
            run_id=f.run_id,
            status=f.status,
            cancel_reason=f.cancel_reason,
            error=f.error,
            output=f.output,
            updated_at=f.updated_at,
        )
        c.execute(_FINISH_RUN, run)
        if f.webhook is not None:
            outbox.SQLITE_OUTBOX.put(c, f.webhook)
    if f.thread_status is None:
        return
    at = dict(thread_id=f.thread_id, status=f.thread_status, updated_at=f.updated_at)
    if f.thread_state is not None and not f.delete:
        # A graph's thread: its values and interrupts are the saved state's.
        state = f.thread_state
        c.execute(
            _FINISH_GRAPH_THREAD,
            THREADS.values(**at, values=state.values, interrupts=state.interrupts),
        )
    elif f.status is RunStatus.SUCCESS and not f.delete:
        # The thread's values become the successful run's output.
        c.execute(_FINISH_THREAD, THREADS.values(**at, values=f.output))
    else:
        c.execute(_MARK_THREAD, THREADS.values(**at))


def _run_marks(run: Run) -> dict[str, JSON]:
    return {
        "graph_id": run.kwargs.get("graph_id", run.assistant_id),
        "assistant_id": run.assistant_id,
    }
