"""The SQL behind the threads, runs and events of a PostgreSQL store, on one connection.

PostgreSQL's side of :mod:`.queries`: the same operations with the same
results, in the dialect of :mod:`.pg_schema`. Metadata and values are matched
in Python on the decoded rows, with the same functions, so a search finds the
same threads on either database. A read that a write depends on locks its
row (``FOR UPDATE``), so two replicas changing one thread take turns.

These functions block. :class:`~runyard.store.postgres.PostgresStore` runs
them in a worker thread, each write inside one transaction.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ..model import JSON, Event, Run, RunStatus, Thread, ThreadStatus
from . import pg_checkpoints, pg_crons, pg_outbox
from .interface import Batch, FinalState, ThreadState
from .pg_connection import scan
from .pg_schema import Conn, insert, update
from .queries import _holds, _run_marks
from .schema import EVENTS, RUNS, THREADS

_PUT_THREAD = insert(THREADS, "replace")
_ADD_RUN = insert(RUNS)
_ADD_EVENT = insert(EVENTS, "ignore")
_MARK_THREAD = update(THREADS, "status", "updated_at")
_START_THREAD = update(THREADS, "status", "metadata", "updated_at")
_MARK_RUN = update(RUNS, "status", "updated_at")
_NEW_ATTEMPT = update(RUNS, "attempt", "updated_at")
_FINISH_RUN = update(RUNS, "status", "cancel_reason", "error", "output", "updated_at")
_FINISH_THREAD = update(THREADS, "status", "values", "updated_at")
_FINISH_GRAPH_THREAD = update(THREADS, "status", "values", "interrupts", "updated_at")
_PATCH_THREAD = update(THREADS, "metadata", "updated_at")
_GET_THREAD = THREADS.select("WHERE thread_id = %s")
_LOCK_THREAD = _GET_THREAD + " FOR UPDATE"
_LOCK_THREADS = THREADS.select("WHERE thread_id = ANY(%s) FOR UPDATE")
_GET_RUN = RUNS.select("WHERE run_id = %s")
_UNFINISHED = RUNS.select("WHERE status IN ('pending', 'running') ORDER BY created_at, queue_seq")
_READ_EVENTS = EVENTS.select("WHERE run_id = %s AND seq > %s ORDER BY seq LIMIT %s")
# Finished runs to purge; SKIP LOCKED: two replicas purging at once pick different ones.
_PURGEABLE = (
    "SELECT run_id FROM runs WHERE status NOT IN ('pending', 'running') AND updated_at < %s"
    " LIMIT %s FOR UPDATE SKIP LOCKED"
)

# -- threads ------------------------------------------------------------------


def put_thread(c: Conn, thread: Thread) -> None:
    c.execute(_PUT_THREAD, THREADS.row(thread))


def get_thread(db: Conn, thread_id: str, *, lock: bool = False) -> Thread | None:
    """The thread; ``lock``: hold its row until the transaction ends."""
    row = db.execute(_LOCK_THREAD if lock else _GET_THREAD, (thread_id,)).fetchone()
    return None if row is None else THREADS.load(row)


def thread_owner(db: Conn, thread_id: str) -> str | None:
    row = db.execute("SELECT owner FROM threads WHERE thread_id = %s", (thread_id,)).fetchone()
    return None if row is None else str(row[0])


def search_threads(
    db: Conn,
    *,
    owner: str,
    metadata: dict[str, JSON],
    status: str | None,
    limit: int,
    offset: int,
    values: dict[str, JSON] | None = None,
) -> list[Thread]:
    found: list[Thread] = []
    if limit <= 0:
        return found
    for i, thread in enumerate(_matching(db, owner, metadata, values or {}, status)):
        if i >= offset:
            found.append(thread)
            if len(found) >= limit:
                break
    return found


def count_threads(
    db: Conn, *, owner: str, metadata: dict[str, JSON], values: dict[str, JSON], status: str | None
) -> int:
    return sum(1 for _ in _matching(db, owner, metadata, values, status))


def _matching(
    db: Conn,
    owner: str,
    metadata: dict[str, JSON],
    values: dict[str, JSON],
    status: str | None,
) -> Iterator[Thread]:
    """The owner's threads, newest first, whose metadata and values hold every pair given."""
    where, args = "owner = %s", [owner]
    if status is not None:
        where += " AND status = %s"
        args.append(status)
    query = THREADS.select(f"WHERE {where} ORDER BY created_at DESC, thread_id DESC")
    with scan(db, query, args) as rows:
        for row in rows:
            thread = THREADS.load(row)
            if _holds(thread.metadata, metadata) and _holds(thread.values, values):
                yield thread


def patch_thread(
    c: Conn, thread_id: str, metadata: dict[str, JSON], updated_at: float
) -> Thread | None:
    """Merge ``metadata`` into the thread's, key by key (a shallow merge, as LangGraph's)."""
    thread = get_thread(c, thread_id, lock=True)
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
    c: Conn, thread_id: str, state: ThreadState, status: ThreadStatus, updated_at: float
) -> None:
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


def delete_thread(c: Conn, thread_id: str) -> None:
    c.execute(
        "DELETE FROM events WHERE run_id IN (SELECT run_id FROM runs WHERE thread_id = %s)",
        (thread_id,),
    )
    c.execute("DELETE FROM runs WHERE thread_id = %s", (thread_id,))
    c.execute("DELETE FROM threads WHERE thread_id = %s", (thread_id,))
    pg_checkpoints.delete_for_thread(c, thread_id)
    pg_crons.delete_for_thread(c, thread_id)


# -- runs ---------------------------------------------------------------------


def get_run(db: Conn, run_id: str) -> Run | None:
    row = db.execute(_GET_RUN, (run_id,)).fetchone()
    return None if row is None else RUNS.load(row)


def list_runs(
    db: Conn,
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
            clauses.append(f"{column} = %s")
            args.append(value)
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    query = RUNS.select(f"{where} ORDER BY created_at DESC, queue_seq DESC LIMIT %s OFFSET %s")
    return [RUNS.load(row) for row in db.execute(query, [*args, limit, offset])]


def unfinished_runs(db: Conn) -> list[Run]:
    return [RUNS.load(row) for row in db.execute(_UNFINISHED)]


def delete_run(c: Conn, run_id: str) -> None:
    c.execute("DELETE FROM events WHERE run_id = %s", (run_id,))
    c.execute("DELETE FROM runs WHERE run_id = %s", (run_id,))


def new_attempt(c: Conn, run_id: str, attempt: int, at: float) -> None:
    c.execute(_NEW_ATTEMPT, RUNS.values(run_id=run_id, attempt=attempt, updated_at=at))


def purge_some(c: Conn, before: float, limit: int) -> int:
    """Delete up to ``limit`` finished runs updated before ``before``; return how many."""
    ids = [row[0] for row in c.execute(_PURGEABLE, (before, limit))]
    if ids:
        c.execute("DELETE FROM events WHERE run_id = ANY(%s)", (ids,))
        c.execute("DELETE FROM runs WHERE run_id = ANY(%s)", (ids,))
    pg_outbox.PG_OUTBOX.purge_some(c, before)
    return len(ids)


# -- events -------------------------------------------------------------------


def read_events(db: Conn, run_id: str, after_seq: int, limit: int) -> list[Event]:
    return [EVENTS.load(row) for row in db.execute(_READ_EVENTS, (run_id, after_seq, limit))]


def last_seq(db: Conn, run_id: str) -> int:
    row = db.execute("SELECT max(seq) FROM events WHERE run_id = %s", (run_id,)).fetchone()
    return -1 if row is None or row[0] is None else int(row[0])


# -- one batch ------------------------------------------------------------------


def commit(c: Conn, batch: Batch) -> None:
    """Write ``batch`` in the order :class:`~runyard.store.Batch` documents.

    One read first (the metadata of the threads that new runs start on), then
    every write in one pipeline, sent together rather than one round trip each.
    """
    started = _started_threads(c, batch.created)
    with c.pipeline():
        cursor = c.cursor()
        cursor.executemany(_PUT_THREAD, [THREADS.row(t) for _, t in batch.created if t is not None])
        cursor.executemany(_ADD_RUN, [RUNS.row(r) for r, _ in batch.created])
        pg_crons.fired(c, [r for r, _ in batch.created])
        cursor.executemany(_START_THREAD, started)
        cursor.executemany(_ADD_EVENT, [EVENTS.row(e) for e in batch.events])
        cursor.executemany(
            _MARK_RUN,
            [
                RUNS.values(run_id=run_id, status=RunStatus.RUNNING, updated_at=at)
                for run_id, at in batch.running
            ],
        )
        pg_checkpoints.write_checkpoints(c, batch.checkpoints)
        pg_checkpoints.write_writes(c, batch.writes)
        for final in batch.finals:
            finish(c, final)


def _started_threads(c: Conn, created: list[tuple[Run, Thread | None]]) -> list[dict[str, Any]]:
    """The update of each new run's thread: busy, its metadata merged with the run's
    graph and assistant (front ends find a graph's threads by them).

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
        merged = merge_patch(metadata[run.thread_id], _run_marks(run))
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


def finish(c: Conn, f: FinalState) -> None:
    """Write the end of one run and, unless ``thread_status`` is None, its thread's state."""
    if f.delete:
        delete_run(c, f.run_id)
        pg_checkpoints.delete_for_runs(c, [f.run_id])
    else:
        c.cursor().executemany(_ADD_EVENT, [EVENTS.row(e) for e in f.events])
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
            pg_outbox.PG_OUTBOX.put(c, f.webhook)
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
