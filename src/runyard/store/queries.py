"""The SQL of threads, runs and events, on one connection, for SQLite and PostgreSQL.

Every statement is built from the table descriptions in :mod:`.schema`, so no
query depends on the order of columns and each value is encoded and decoded
in one place. The statements are written once, in a :class:`RunSql`; what
the two databases write differently is its fields: SQLite's are
:data:`SQLITE_RUNS` here, PostgreSQL's are in :mod:`.pg_queries`. Metadata
and values are matched in Python on the decoded rows, so a search finds the
same threads on either database. SQLite's side uses plain :mod:`sqlite3`:
the descriptions already give every statement, writes run in our own
``BEGIN IMMEDIATE`` transactions, and sqlite-utils would only add a
savepoint around each call.

These functions block. The stores (:class:`~.runs.RunsOnSQL`) run them in a
worker thread, each write inside one transaction that it opens and closes.
"""

from __future__ import annotations

import dataclasses
import functools
import sqlite3
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from ..model import JSON, Event, Run, RunStatus, Thread, ThreadStatus, dumps
from . import checkpoints, outbox
from .checkpoints import CheckpointSql
from .connection import closing_scan, sqlite_one_of
from .crons import SQLITE_CRONS, CronSql
from .interface import Batch, FinalState, OneOf, Scan, ThreadState
from .outbox import OutboxSql
from .schema import EVENTS, RUNS, THREADS, Table

_MISSING = object()


class Update(Protocol):
    """An UPDATE of some fields of the row with a given key; values from ``Table.values``."""

    def __call__(self, table: Table[Any], /, *fields: str) -> str: ...


@dataclasses.dataclass(frozen=True)
class RunSql:
    """The statements of threads, runs and events in one database's dialect: its
    placeholder ``mark``; the INSERT of a thread (replacing one of the same id), of a
    run (``keep_run``: leaving one of the same id alone, for a batch written
    :attr:`~.interface.Batch.again`), and of an event (left alone if its run has one
    of that seq); its ``update``; the UPDATE that starts a new run's thread (its
    values: :meth:`write`); what holds
    a row read for a change (``lock``), and holds it unless another transaction does
    (``skip_locked``); the columns that order threads and runs as they were written;
    how it streams a search's rows (:data:`~.interface.Scan`), runs ``executemany`` on a
    connection (``cursor``) and picks rows by a list (:data:`~.interface.OneOf`);
    and the statements of what goes with a thread or a run: checkpoints, webhooks
    and crons."""

    mark: str
    replace_thread: str
    add_run: str
    keep_run: str
    add_event: str
    update: Update
    start_thread: str
    lock: str
    skip_locked: str
    thread_order: tuple[str, ...]
    run_order: tuple[str, ...]
    scan: Scan
    cursor: Callable[[Any], Any]
    one_of: OneOf
    checkpoints: CheckpointSql
    outbox: OutboxSql
    crons: CronSql

    @functools.cached_property
    def mark_thread(self) -> str:
        return self.update(THREADS, "status", "updated_at")

    @functools.cached_property
    def mark_run(self) -> str:
        return self.update(RUNS, "status", "updated_at")

    @functools.cached_property
    def finish_run(self) -> str:
        return self.update(RUNS, "status", "cancel_reason", "error", "output", "updated_at")

    @functools.cached_property
    def finish_thread(self) -> str:
        return self.update(THREADS, "status", "values", "updated_at")

    @functools.cached_property
    def finish_graph_thread(self) -> str:
        return self.update(THREADS, "status", "values", "interrupts", "updated_at")

    @functools.cached_property
    def owner_of(self) -> str:
        return f"SELECT owner FROM threads WHERE thread_id = {self.mark}"

    @functools.cached_property
    def events_after(self) -> str:
        m = self.mark
        return EVENTS.select(f"WHERE run_id = {m} AND seq > {m} ORDER BY seq LIMIT {m}")

    # -- threads --------------------------------------------------------------------

    def put_thread(self, c: Any, thread: Thread) -> None:
        c.execute(self.replace_thread, THREADS.row(thread))

    def get_thread(self, db: Any, thread_id: str, *, lock: bool = False) -> Thread | None:
        """The thread; ``lock``: hold its row until the transaction ends."""
        query = THREADS.select(f"WHERE thread_id = {self.mark}") + (self.lock if lock else "")
        row = db.execute(query, (thread_id,)).fetchone()
        return None if row is None else THREADS.load(row)

    def thread_owner(self, db: Any, thread_id: str) -> str | None:
        row = db.execute(self.owner_of, (thread_id,)).fetchone()
        return None if row is None else str(row[0])

    def matching(
        self,
        db: Any,
        owner: str,
        metadata: dict[str, JSON],
        values: dict[str, JSON],
        status: str | None,
    ) -> Iterator[Thread]:
        """The owner's threads, newest first, whose metadata and values hold every pair given."""
        where, args = f"owner = {self.mark}", [owner]
        if status is not None:
            where += f" AND status = {self.mark}"
            args.append(status)
        query = THREADS.select(f"WHERE {where} ORDER BY {_newest(self.thread_order)}")
        with self.scan(db, query, args) as rows:
            for row in rows:
                thread = THREADS.load(row)
                if _holds(thread.metadata, metadata) and _holds(thread.values, values):
                    yield thread

    def patch_thread(
        self, c: Any, thread_id: str, metadata: dict[str, JSON], updated_at: float
    ) -> Thread | None:
        """Merge ``metadata`` into the thread's, key by key (a shallow merge, as LangGraph's)."""
        thread = self.get_thread(c, thread_id, lock=True)
        if thread is None:
            return None
        thread.metadata = {**thread.metadata, **metadata}
        thread.updated_at = updated_at
        c.execute(
            self.update(THREADS, "metadata", "updated_at"),
            THREADS.values(thread_id=thread_id, metadata=thread.metadata, updated_at=updated_at),
        )
        return thread

    def set_thread_state(
        self, c: Any, thread_id: str, state: ThreadState, status: ThreadStatus, updated_at: float
    ) -> None:
        """A graph thread's values, pending interrupts and status, after its state was updated."""
        c.execute(
            self.finish_graph_thread,
            THREADS.values(
                thread_id=thread_id,
                status=status,
                values=state.values,
                interrupts=state.interrupts,
                updated_at=updated_at,
            ),
        )

    def delete_thread(self, c: Any, thread_id: str) -> None:
        m = self.mark
        c.execute(
            f"DELETE FROM events WHERE run_id IN (SELECT run_id FROM runs WHERE thread_id = {m})",
            (thread_id,),
        )
        c.execute(f"DELETE FROM runs WHERE thread_id = {m}", (thread_id,))
        c.execute(f"DELETE FROM threads WHERE thread_id = {m}", (thread_id,))
        self.checkpoints.delete_for_thread(c, thread_id)
        self.crons.delete_for_thread(c, thread_id)

    # -- runs -------------------------------------------------------------------------

    def get_run(self, db: Any, run_id: str) -> Run | None:
        row = db.execute(RUNS.select(f"WHERE run_id = {self.mark}"), (run_id,)).fetchone()
        return None if row is None else RUNS.load(row)

    def list_runs(
        self,
        db: Any,
        thread_id: str | None,
        status: str | None,
        owner: str | None,
        limit: int,
        offset: int,
    ) -> list[Run]:
        """Runs newest first, of the thread, status and owner given (None: any)."""
        m = self.mark
        clauses: list[str] = []
        args: list[Any] = []
        for column, value in (("thread_id", thread_id), ("status", status), ("owner", owner)):
            if value is not None:
                clauses.append(f"{column} = {m}")
                args.append(value)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        query = RUNS.select(f"{where} ORDER BY {_newest(self.run_order)} LIMIT {m} OFFSET {m}")
        return [RUNS.load(row) for row in db.execute(query, [*args, limit, offset])]

    def unfinished_runs(self, db: Any) -> list[Run]:
        order = ", ".join(self.run_order)
        query = RUNS.select(f"WHERE status IN ('pending', 'running') ORDER BY {order}")
        return [RUNS.load(row) for row in db.execute(query)]

    def delete_run(self, c: Any, run_id: str) -> None:
        c.execute(f"DELETE FROM events WHERE run_id = {self.mark}", (run_id,))
        c.execute(f"DELETE FROM runs WHERE run_id = {self.mark}", (run_id,))

    def new_attempt(self, c: Any, run_id: str, attempt: int, at: float) -> None:
        c.execute(
            self.update(RUNS, "attempt", "updated_at"),
            RUNS.values(run_id=run_id, attempt=attempt, updated_at=at),
        )

    def purge_some(self, c: Any, before: float, limit: int) -> int:
        """Delete up to ``limit`` finished runs updated before ``before``; return how many.

        Two replicas purging at once pick different runs (``skip_locked``)."""
        m = self.mark
        ids = [
            row[0]
            for row in c.execute(
                "SELECT run_id FROM runs WHERE status NOT IN ('pending', 'running')"
                f" AND updated_at < {m} LIMIT {m}{self.skip_locked}",
                (before, limit),
            )
        ]
        if ids:
            picked, args = self.one_of("run_id", ids)
            c.execute(f"DELETE FROM events WHERE {picked}", args)
            c.execute(f"DELETE FROM runs WHERE {picked}", args)
        self.outbox.purge_some(c, before)
        return len(ids)

    # -- events -----------------------------------------------------------------------

    def read_events(self, db: Any, run_id: str, after_seq: int, limit: int) -> list[Event]:
        return [
            EVENTS.load(row) for row in db.execute(self.events_after, (run_id, after_seq, limit))
        ]

    def last_seq(self, db: Any, run_id: str) -> int:
        row = db.execute(
            f"SELECT max(seq) FROM events WHERE run_id = {self.mark}", (run_id,)
        ).fetchone()
        return -1 if row is None or row[0] is None else int(row[0])

    # -- one batch --------------------------------------------------------------------

    def write(self, c: Any, batch: Batch, started: list[dict[str, Any]]) -> None:
        """Write ``batch`` in the order :class:`~runyard.store.Batch` documents;
        ``started``: the values of :attr:`start_thread` for its new runs."""
        cursor = self.cursor(c)
        cursor.executemany(
            self.replace_thread, [THREADS.row(t) for _, t in batch.created if t is not None]
        )
        add_run = self.keep_run if batch.again else self.add_run
        cursor.executemany(add_run, [RUNS.row(r) for r, _ in batch.created])
        self.crons.fired(c, [r for r, _ in batch.created])
        cursor.executemany(self.start_thread, started)
        cursor.executemany(self.add_event, [EVENTS.row(e) for e in batch.events])
        cursor.executemany(
            self.mark_run,
            [
                RUNS.values(run_id=run_id, status=RunStatus.RUNNING, updated_at=at)
                for run_id, at in batch.running
            ],
        )
        self.checkpoints.write_checkpoints(c, batch.checkpoints)
        self.checkpoints.write_writes(c, batch.writes)
        for final in batch.finals:
            self.finish(c, final)

    def finish(self, c: Any, f: FinalState) -> None:
        """Write the end of one run and, unless ``thread_status`` is None, its thread's state."""
        if f.delete:
            self.delete_run(c, f.run_id)
            self.checkpoints.delete_for_runs(c, [f.run_id])
        else:
            self.cursor(c).executemany(self.add_event, [EVENTS.row(e) for e in f.events])
            run = RUNS.values(
                run_id=f.run_id,
                status=f.status,
                cancel_reason=f.cancel_reason,
                error=f.error,
                output=f.output,
                updated_at=f.updated_at,
            )
            c.execute(self.finish_run, run)
            if f.webhook is not None:
                self.outbox.put(c, f.webhook)
        if f.thread_status is None:
            return
        at = dict(thread_id=f.thread_id, status=f.thread_status, updated_at=f.updated_at)
        if f.thread_state is not None and not f.delete:
            # A graph's thread: its values and interrupts are the saved state's.
            state = f.thread_state
            c.execute(
                self.finish_graph_thread,
                THREADS.values(**at, values=state.values, interrupts=state.interrupts),
            )
        elif f.status is RunStatus.SUCCESS and not f.delete:
            # The thread's values become the successful run's output.
            c.execute(self.finish_thread, THREADS.values(**at, values=f.output))
        else:
            c.execute(self.mark_thread, THREADS.values(**at))


def _newest(order: tuple[str, ...]) -> str:
    return ", ".join(f"{column} DESC" for column in order)


def _holds(found: JSON, wanted: dict[str, JSON]) -> bool:
    if not wanted:
        return True
    return isinstance(found, dict) and all(found.get(k, _MISSING) == v for k, v in wanted.items())


def run_marks(run: Run) -> dict[str, JSON]:
    """What a run starting on a thread merges into its metadata: its graph and
    assistant (front ends find a graph's threads by them)."""
    return {
        "graph_id": run.kwargs.get("graph_id", run.assistant_id),
        "assistant_id": run.assistant_id,
    }


SQLITE_RUNS = RunSql(
    mark="?",
    replace_thread=THREADS.insert("INSERT OR REPLACE"),
    add_run=RUNS.insert(),
    keep_run=RUNS.insert("INSERT OR IGNORE"),
    add_event=EVENTS.insert("INSERT OR IGNORE"),
    update=Table.update,
    start_thread=(
        'UPDATE "threads" SET "status" = :status, "updated_at" = :updated_at,'
        ' "metadata" = json_patch("metadata", :merged) WHERE "thread_id" = :thread_id'
    ),
    lock="",
    skip_locked="",
    thread_order=("created_at",),
    run_order=("created_at",),
    scan=closing_scan,
    cursor=sqlite3.Connection.cursor,
    one_of=sqlite_one_of,
    checkpoints=checkpoints.SQLITE_CHECKPOINTS,
    outbox=outbox.SQLITE_OUTBOX,
    crons=SQLITE_CRONS,
)


def commit(c: sqlite3.Connection, batch: Batch) -> None:
    """Write ``batch`` in the order :class:`~runyard.store.Batch` documents; SQLite merges
    each new run's marks into its thread's metadata (``json_patch``)."""
    started = [
        {
            **THREADS.values(
                thread_id=r.thread_id, status=ThreadStatus.BUSY, updated_at=r.created_at
            ),
            "merged": dumps(run_marks(r)),
        }
        for r, _ in batch.created
    ]
    SQLITE_RUNS.write(c, batch, started)
