"""The store: its schema, a locked database, and reads of what was written.

The contract tests take ``store``, which runs each of them twice: on a SQLite
file and on a fresh PostgreSQL database (:mod:`tests.pg`), through
:func:`~runyard.store.store_for`, so both stores give the same answers to the
same calls. The tests at the end check what only SQLite has: its file's
schema and upgrades (PostgreSQL's own tests are in ``test_postgres.py``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

from runyard.errors import StoreError, StoreUnusable
from runyard.model import (
    Assistant,
    CancelReason,
    Cron,
    Delivery,
    DeliveryAttempt,
    DeliveryState,
    ErrorInfo,
    Event,
    MultitaskStrategy,
    Run,
    RunRequest,
    RunStatus,
    Thread,
    ThreadStatus,
)
from runyard.store import (
    SCHEMA_VERSION,
    Batch,
    BlobRow,
    CheckpointRow,
    FinalState,
    SQLiteStore,
    Store,
    ThreadState,
    WriteRow,
    is_postgres,
    retry,
    store_for,
)
from runyard.store.assistants import AssistantFilter
from runyard.store.crons import CLAIM_KEY
from runyard.store.schema import TABLES

from . import pg
from .helpers import assert_gapless, start_supervisor

pytestmark = pytest.mark.trio

postgres_server = pg.postgres_server
postgres_url = pg.postgres_url

# -- the store under test, and its database reached without it --------------------


@pytest.fixture(params=["sqlite", "postgres"])
def db(request: pytest.FixtureRequest, db_path: str) -> str:
    """Where the store under test lives: a SQLite file, or an empty PostgreSQL database."""
    if request.param == "sqlite":
        return db_path
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
async def store(db: str) -> AsyncIterator[Store]:
    opened = store_for(db)
    await opened.open()
    try:
        yield opened
    finally:
        await opened.aclose()


@pytest.fixture
async def sqlite_store(db_path: str) -> AsyncIterator[SQLiteStore]:
    opened = SQLiteStore(db_path)
    await opened.open()
    try:
        yield opened
    finally:
        await opened.aclose()


@contextlib.contextmanager
def connected(db: str) -> Iterator[Callable[[str], list[tuple[Any, ...]]]]:
    """Run statements (no parameters) on the database, past the store: a function
    that executes one and returns its rows. Each statement commits."""
    if is_postgres(db):
        import psycopg

        with psycopg.connect(db, autocommit=True) as conn:

            def execute(sql: str) -> list[tuple[Any, ...]]:
                cursor = conn.execute(sql)
                return cursor.fetchall() if cursor.description else []

            yield execute
    else:
        file = sqlite3.connect(db, isolation_level=None)
        try:
            yield lambda sql: file.execute(sql).fetchall()
        finally:
            file.close()


def schema_version(db: str) -> str:
    with connected(db) as execute:
        (row,) = execute("SELECT value FROM meta WHERE key = 'schema_version'")
    return str(row[0])


def tables(db: str) -> set[str]:
    if is_postgres(db):
        query = "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
    else:
        query = "SELECT name FROM sqlite_master WHERE type = 'table'"
    with connected(db) as execute:
        return {row[0] for row in execute(query)}


def fingerprint(db: str) -> object:
    """What must not change when a store refuses a database: a SQLite file's
    bytes; a PostgreSQL database's tables and its meta rows."""
    if not is_postgres(db):
        return Path(db).read_bytes()
    with connected(db) as execute:
        meta = execute("SELECT key, value FROM meta") if "meta" in tables(db) else []
    return tables(db), sorted(meta)


@contextlib.contextmanager
def locked(db: str) -> Iterator[None]:
    """Keep every write out of the database, from another connection, for the block."""
    if is_postgres(db):
        import psycopg

        with psycopg.connect(db) as other:  # a transaction, until the block ends
            names = ", ".join(f'"{table.name}"' for table in TABLES)
            other.execute(f"LOCK TABLE {names} IN EXCLUSIVE MODE")
            yield
            other.rollback()
    else:
        holder = sqlite3.connect(db, isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")
        try:
            yield
        finally:
            holder.execute("ROLLBACK")
            holder.close()


async def all_events(store: Store, run_id: str) -> list[Event]:
    return await store.read_events(run_id, -1, 1_000_000)


def new_run(run_id: str, thread_id: str, at: float, **fields: Any) -> Run:
    return Run(run_id, thread_id, "echo", RunStatus.PENDING, at, at, **fields)


def events(run_id: str, seqs: range, name: str = "values") -> list[Event]:
    return [Event.make(run_id, seq, name, {"seq": seq}) for seq in seqs]


def final(run: Run, **fields: Any) -> FinalState:
    """A successful end of ``run`` at time 9.0, its log ending at seq 1, its thread idle."""
    values: dict[str, Any] = dict(
        run_id=run.run_id,
        thread_id=run.thread_id,
        status=RunStatus.SUCCESS,
        cancel_reason=None,
        error=None,
        output={"answer": 42},
        updated_at=9.0,
        events=[Event.make(run.run_id, 1, "end", {"status": "success"})],
        thread_status=ThreadStatus.IDLE,
    )
    return FinalState(**{**values, **fields})


# -- opening a database ---------------------------------------------------------


async def test_reopening_keeps_the_data_and_the_schema(db: str) -> None:
    for _ in range(2):
        store = store_for(db)
        await store.open()
        await store.put_thread(Thread("t", 1.0, 2.0, owner="ann"))
        await store.aclose()
    reopened = store_for(db)
    await reopened.open()
    try:
        assert await reopened.get_thread("t") == Thread("t", 1.0, 2.0, owner="ann")
    finally:
        await reopened.aclose()
    assert schema_version(db) == str(SCHEMA_VERSION)


async def test_a_newer_schema_is_refused_and_left_untouched(db: str) -> None:
    store = store_for(db)
    await store.open()
    await store.aclose()
    with connected(db) as execute:
        execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    before = fingerprint(db)
    with pytest.raises(StoreUnusable, match="newer runyard"):
        await store_for(db).open()
    assert fingerprint(db) == before


async def test_a_foreign_database_is_refused_and_left_untouched(db: str) -> None:
    with connected(db) as execute:
        execute("CREATE TABLE customers (id INTEGER)")
    with pytest.raises(StoreUnusable, match="did not create"):
        await store_for(db).open()
    assert tables(db) == {"customers"}  # (a SQLite file is left in WAL mode, though)


async def test_a_second_process_is_refused_while_the_first_owns_the_database(db: str) -> None:
    first = store_for(db, exclusive=True)
    await first.open()
    try:
        with pytest.raises(StoreUnusable, match="in use by another runyard process"):
            await store_for(db, exclusive=True).open()
    finally:
        await first.aclose()
    after = store_for(db, exclusive=True)  # the owner's lock went with it
    await after.open()
    await after.aclose()


async def test_a_lock_held_for_two_seconds_is_ridden_out(
    store: Store, nursery: trio.Nursery, db: str
) -> None:
    sup = await start_supervisor(nursery, store)
    holding = threading.Event()

    def hold_lock() -> None:
        with locked(db):
            holding.set()
            time.sleep(2.0)

    holder = threading.Thread(target=hold_lock)
    holder.start()
    await trio.to_thread.run_sync(holding.wait)
    try:
        handle = await sup.create_run(RunRequest("emitter", {"n": 20}))
        run = await sup.wait_run(handle.run_id)
    finally:
        await trio.to_thread.run_sync(holder.join)
    assert run.status is RunStatus.SUCCESS
    stored = await store.get_run(handle.run_id)
    assert stored is not None
    assert stored.status is RunStatus.SUCCESS
    assert_gapless(await all_events(store, handle.run_id))
    await sup.shutdown(0)


async def test_purge_deletes_old_finished_runs_in_batches_and_keeps_the_rest(
    store: Store, nursery: trio.Nursery
) -> None:
    sup = await start_supervisor(nursery, store)
    done = [await sup.create_run(RunRequest("emitter", {"n": 3})) for _ in range(7)]
    for h in done:
        await sup.wait_run(h.run_id)
    live = await sup.create_run(RunRequest("sleepy", {"delay": 60}))
    cutoff = time.time() + 1
    assert await store.purge(cutoff, batch=3) == 7
    for h in done:
        assert await store.get_run(h.run_id) is None
        assert await all_events(store, h.run_id) == []
    assert await store.get_run(live.run_id) is not None
    await sup.shutdown(0)


# -- what one batch writes --------------------------------------------------------


@pytest.mark.parametrize(
    "run",
    [
        Run(
            run_id="r-1",
            thread_id="t-1",
            assistant_id="agent",
            status=RunStatus.INTERRUPTED,
            created_at=1700000000.123456,
            updated_at=1700000001.5,
            metadata={"name": "Zoë 🚢", "nested": {"list": [1, 2.5, None, True]}},
            kwargs={"input": {"text": "日本語"}},
            multitask_strategy=MultitaskStrategy.ROLLBACK,
            cancel_reason=CancelReason.USER,
            error=ErrorInfo("AgentError", "non ascii: ✗"),
            output={"answer": "ja\nnein"},
            owner="ann",
            attempt=3,
        ),
        Run("r-2", "t-2", "agent", RunStatus.PENDING, 1.0, 1.0, {"ü": "ß"}),
    ],
    ids=["every-field-set", "no-cancel-reason-no-error"],
)
async def test_a_run_round_trips_every_field_through_its_row(store: Store, run: Run) -> None:
    await store.commit(Batch(created=[(run, None)]))
    assert await store.get_run(run.run_id) == run


@pytest.mark.parametrize("values", [None, {"messages": ["héllo", {"emoji": "🙂"}]}])
async def test_a_thread_round_trips_every_field_through_its_row(
    store: Store, values: object
) -> None:
    thread = Thread("t-1", 1.25, 2.5, {"tag": "naïve"}, ThreadStatus.INTERRUPTED, values, "bob")
    await store.put_thread(thread)
    assert await store.get_thread("t-1") == thread
    assert await store.thread_owner("t-1") == "bob"
    assert await store.thread_owner("missing") is None


async def test_a_new_run_marks_its_thread_busy_and_merges_its_graph_into_the_metadata(
    store: Store,
) -> None:
    await store.put_thread(Thread("t", 1.0, 1.0, {"a": 1, "graph_id": "old", "x": 1e20}))
    run = new_run("r", "t", 5.0, kwargs={"graph_id": "g"})
    await store.commit(Batch(created=[(run, None)]))
    thread = await store.get_thread("t")
    assert thread is not None
    assert (thread.status, thread.updated_at) == (ThreadStatus.BUSY, 5.0)
    assert thread.metadata == {"a": 1, "graph_id": "g", "x": 1e20, "assistant_id": "echo"}
    assert list(thread.metadata) == ["a", "graph_id", "x", "assistant_id"]
    assert isinstance(thread.metadata["x"], float)


async def test_a_batch_writes_its_threads_runs_events_and_ends_in_order(store: Store) -> None:
    ending, running = new_run("r1", "t1", 1.0), new_run("r2", "t2", 2.0)
    await store.commit(
        Batch(
            created=[(ending, Thread("t1", 1.0, 1.0)), (running, Thread("t2", 2.0, 2.0))],
            events=[*events("r1", range(1)), *events("r2", range(3))],
            running=[("r1", 3.0), ("r2", 3.0)],
            finals=[final(ending)],
        )
    )
    done, busy = await store.get_run("r1"), await store.get_run("r2")
    assert done is not None
    assert busy is not None
    assert (done.status, done.output, done.updated_at) == (RunStatus.SUCCESS, {"answer": 42}, 9.0)
    assert (busy.status, busy.updated_at) == (RunStatus.RUNNING, 3.0)
    assert [(e.seq, e.event) for e in await all_events(store, "r1")] == [(0, "values"), (1, "end")]
    assert await store.last_seq("r2") == 2
    thread = await store.get_thread("t1")
    assert thread is not None
    assert (thread.status, thread.values) == (ThreadStatus.IDLE, {"answer": 42})
    assert await store.unfinished_runs() == [busy]


async def test_a_batch_that_fails_writes_nothing_and_the_next_one_commits(store: Store) -> None:
    await store.commit(Batch(created=[(new_run("taken", "t0", 1.0), Thread("t0", 1.0, 1.0))]))
    doomed = Batch(
        created=[
            (new_run("r", "t", 2.0), Thread("t", 2.0, 2.0)),
            (new_run("taken", "t", 2.0), None),
        ],
        events=events("r", range(3)),
    )
    with pytest.raises(StoreError):
        await store.commit(doomed)
    assert await store.get_run("r") is None
    assert await store.get_thread("t") is None
    assert await all_events(store, "r") == []
    await store.commit(Batch(created=[(new_run("r", "t", 2.0), Thread("t", 2.0, 2.0))]))
    assert await store.get_run("r") is not None


async def test_a_batch_written_again_after_a_lost_answer_changes_nothing(store: Store) -> None:
    # The database went away with the answer: the commit writer cannot tell
    # whether the batch committed, and writes it again as such.
    def batch() -> Batch:
        return Batch(
            created=[(new_run("r", "t", 2.0), Thread("t", 2.0, 2.0))],
            events=events("r", range(3)),
            running=[("r", 3.0)],
        )

    await store.commit(batch())
    with pytest.raises(StoreError):  # a first try is refused a run that is there
        await store.commit(batch())
    await store.commit(dataclasses.replace(batch(), again=True))
    run = await store.get_run("r")
    assert run is not None
    assert run.status is RunStatus.RUNNING
    assert [e.seq for e in await all_events(store, "r")] == [0, 1, 2]


async def test_an_event_written_twice_keeps_its_first_version(store: Store) -> None:
    await store.commit(Batch(events=events("r", range(3))))
    await store.commit(Batch(events=[*events("r", range(2, 4), name="again")]))
    stored = await all_events(store, "r")
    assert [(e.seq, e.event) for e in stored] == [
        (0, "values"), (1, "values"), (2, "values"), (3, "again")
    ]  # fmt: skip
    assert [e.seq for e in await store.read_events("r", 0, 2)] == [1, 2]
    assert stored[3].frame == b'event: again\ndata: {"seq":3}\nid: 3\n\n'
    assert await store.last_seq("nothing") == -1


async def test_a_large_batch_of_events_some_stored_already_keeps_their_first_versions(
    store: Store,
) -> None:
    # Large enough for PostgreSQL's COPY, which cannot skip a stored row: the batch
    # is written again with INSERTs, whole, in one transaction.
    await store.commit(Batch(events=events("r", range(20))))
    await store.commit(Batch(events=events("r", range(10, 40), name="again")))
    stored = await all_events(store, "r")
    assert [e.seq for e in stored] == list(range(40))
    assert {e.event for e in stored[:20]} == {"values"}
    assert {e.event for e in stored[20:]} == {"again"}


async def test_a_graph_run_leaves_its_state_and_a_rollback_leaves_nothing(store: Store) -> None:
    graph, rolled = new_run("g", "t", 1.0), new_run("rb", "t", 2.0)
    state = ThreadState({"messages": ["hi"]}, {"task": [{"id": "i", "value": 1}]})
    await store.commit(
        Batch(
            created=[(graph, Thread("t", 1.0, 1.0)), (rolled, None)],
            events=events("rb", range(1)),
            checkpoints=[checkpoint("t", "1", run_id="rb")],
            finals=[final(graph, thread_state=state, thread_status=ThreadStatus.INTERRUPTED)],
        )
    )
    thread = await store.get_thread("t")
    assert thread is not None
    assert (thread.values, thread.interrupts) == (state.values, state.interrupts)
    assert thread.status is ThreadStatus.INTERRUPTED
    await store.commit(Batch(finals=[final(rolled, delete=True, thread_status=ThreadStatus.IDLE)]))
    assert await store.get_run("rb") is None
    assert await all_events(store, "rb") == []
    assert await store.list_checkpoints("t", "") == []
    thread = await store.get_thread("t")
    assert thread is not None
    assert (thread.status, thread.values) == (ThreadStatus.IDLE, state.values)


# -- threads and runs -------------------------------------------------------------


async def test_threads_are_found_newest_first_by_metadata_values_and_status(
    store: Store,
) -> None:
    threads: list[tuple[dict[str, Any], ThreadStatus]] = [
        ({"k": "v"}, ThreadStatus.IDLE), ({"k": "v", "n": 1}, ThreadStatus.BUSY),
        ({"k": "w"}, ThreadStatus.IDLE), ({"k": "v"}, ThreadStatus.IDLE),
    ]  # fmt: skip
    for n, (meta, status) in enumerate(threads):
        await store.put_thread(Thread(f"t{n}", float(n), float(n), meta, status, {"v": n}, "ann"))
    await store.put_thread(Thread("other", 9.0, 9.0, {"k": "v"}, owner="bob"))

    async def found(**query: Any) -> list[str]:
        args: dict[str, Any] = dict(metadata={}, status=None, limit=10, offset=0) | query
        return [t.thread_id for t in await store.search_threads(owner="ann", **args)]

    assert await found(metadata={"k": "v"}) == ["t3", "t1", "t0"]
    assert await found(metadata={"k": "v"}, offset=1, limit=1) == ["t1"]
    assert await found(status="busy") == ["t1"]
    assert await found(values={"v": 2}) == ["t2"]
    assert await found(metadata={"missing": None}) == []
    count = await store.count_threads(owner="ann", metadata={"k": "v"}, values={}, status="idle")
    assert count == 2


async def test_patching_a_thread_merges_its_metadata_key_by_key(store: Store) -> None:
    await store.put_thread(Thread("t", 1.0, 1.0, {"a": 1, "b": {"c": 2}}))
    patched = await store.patch_thread("t", {"b": {"d": 3}, "e": None}, 5.0)
    assert patched == Thread("t", 1.0, 5.0, {"a": 1, "b": {"d": 3}, "e": None})
    assert await store.get_thread("t") == patched
    assert await store.patch_thread("missing", {"a": 1}, 5.0) is None


async def test_runs_are_listed_newest_first_by_thread_status_and_owner(store: Store) -> None:
    runs = [
        new_run("r0", "t", 1.0, owner="ann"),
        new_run("r1", "t", 2.0, owner="bob"),
        new_run("r2", "u", 3.0, owner="ann"),
    ]
    await store.commit(Batch(created=[(r, None) for r in runs], running=[("r1", 4.0)]))

    async def listed(thread_id: str | None, **query: Any) -> list[str]:
        args: dict[str, Any] = dict(status=None, limit=10, offset=0) | query
        return [r.run_id for r in await store.list_runs(thread_id, **args)]

    assert await listed("t") == ["r1", "r0"]
    assert await listed(None) == ["r2", "r1", "r0"]
    assert await listed(None, owner="ann", limit=1, offset=1) == ["r0"]
    assert await listed(None, status="running") == ["r1"]
    assert [r.run_id for r in await store.unfinished_runs()] == ["r0", "r1", "r2"]
    await store.new_attempt("r0", 2, 5.0)
    again = await store.get_run("r0")
    assert again is not None
    assert (again.attempt, again.updated_at) == (2, 5.0)
    await store.delete_run("r0")
    assert await listed("t") == ["r1"]


async def test_deleting_a_thread_deletes_its_runs_events_checkpoints_and_crons(
    store: Store,
) -> None:
    await store.commit(
        Batch(
            created=[(new_run("r", "t", 1.0), Thread("t", 1.0, 1.0))],
            events=events("r", range(2)),
            checkpoints=[checkpoint("t", "1")],
        )
    )
    await store.put_cron(cron("c", thread_id="t"))
    await store.delete_thread("t")
    assert await store.get_thread("t") is None
    assert await store.get_run("r") is None
    assert await all_events(store, "r") == []
    assert await store.list_checkpoints("t", None) == []
    assert await store.get_cron("c") is None


# -- checkpoints ------------------------------------------------------------------


def checkpoint(thread_id: str, checkpoint_id: str, *, run_id: str | None = None) -> CheckpointRow:
    """A checkpoint whose channel ``a`` is at version ``checkpoint_id``."""
    blob = BlobRow(thread_id, "", "a", checkpoint_id, "json", f"a@{checkpoint_id}".encode())
    return CheckpointRow(
        thread_id, "", checkpoint_id, None, run_id, "json", b"cp" + checkpoint_id.encode(),
        {"step": int(checkpoint_id)}, 1.0, [blob],
    )  # fmt: skip


def write(checkpoint_id: str, task: str, value: bytes, *, replace: bool = False) -> WriteRow:
    return WriteRow("t", "", checkpoint_id, task, 0, "ch", "json", value, replace=replace)


def stored(row: CheckpointRow) -> CheckpointRow:
    """A checkpoint as the store reads it back: without its blobs."""
    return dataclasses.replace(row, blobs=[])


async def test_checkpoints_are_read_newest_first_with_their_blobs_and_writes(
    store: Store,
) -> None:
    first, second = checkpoint("t", "1", run_id="r"), checkpoint("t", "2", run_id="r")
    await store.commit(
        Batch(checkpoints=[first, second], writes=[write("2", "b", b"kept"), write("2", "a", b"x")])
    )
    await store.commit(
        Batch(writes=[write("2", "b", b"ignored"), write("2", "a", b"replaced", replace=True)])
    )
    assert await store.get_checkpoint("t", "", None) == stored(second)
    assert await store.get_checkpoint("t", "", "1") == stored(first)
    assert await store.get_checkpoint("t", "other-ns", None) is None
    assert await store.list_checkpoints("t", "", before="2") == [stored(first)]
    assert await store.list_checkpoints(None, None, limit=1) == [stored(second)]
    loaded = await store.load_checkpoints(
        "t", "", versions_of=lambda row: {"a": row.checkpoint_id, "gone": "9"}
    )
    assert [(row, blobs) for row, blobs, _ in loaded] == [
        (stored(second), second.blobs), (stored(first), first.blobs)
    ]  # fmt: skip
    assert [(w.task_id, w.blob) for w in loaded[0][2]] == [("a", b"replaced"), ("b", b"kept")]
    assert loaded[1][2] == []


async def test_a_thread_copy_keeps_its_checkpoints_when_the_source_runs_are_deleted(
    store: Store,
) -> None:
    await store.commit(
        Batch(checkpoints=[checkpoint("t", "1", run_id="r")], writes=[write("1", "a", b"w")])
    )
    await store.copy_checkpoints("t", "copy")
    await store.delete_checkpoints(run_ids=["r"])
    assert await store.list_checkpoints("t", "") == []
    copied = await store.load_checkpoints("copy", "", versions_of=lambda row: {"a": "1"})
    [(row, blobs, writes)] = copied
    assert (row.thread_id, row.checkpoint_id, row.run_id) == ("copy", "1", None)
    assert [b.blob for b in blobs] == [b"a@1"]
    assert [w.blob for w in writes] == [b"w"]
    await store.delete_checkpoints(thread_id="copy")
    assert await store.list_checkpoints("copy", None) == []


# -- assistants -------------------------------------------------------------------


def assistant(assistant_id: str, name: str, **fields: Any) -> Assistant:
    return Assistant(assistant_id, "echo", 1.0, 1.0, name=name, owner="ann", **fields)


async def test_assistants_sort_by_name_without_regard_to_ascii_case(store: Store) -> None:
    for n, name in enumerate(["b", "a", "Ä", "A", "Z"]):
        await store.add_assistant(assistant(f"a{n}", name, metadata={"n": n}))
    where = AssistantFilter("ann", ("echo",))

    async def names(**query: Any) -> list[str]:
        args: dict[str, Any] = dict(sort_by="name", descending=False, limit=10, offset=0) | query
        return [a.name for a in await store.search_assistants(where, **args)]

    # A and a tie, then go by id; Ä is not ASCII and sorts after every letter.
    assert await names() == ["a", "A", "b", "Z", "Ä"]
    assert await names(descending=True) == ["Ä", "Z", "b", "A", "a"]
    assert await names(offset=1, limit=2) == ["A", "b"]
    assert await store.count_assistants(AssistantFilter("ann", ("echo",), name="A")) == 2
    found = await store.search_assistants(
        AssistantFilter("ann", ("echo",), metadata={"n": 4}),
        sort_by="created_at", descending=True, limit=10, offset=0,
    )  # fmt: skip
    assert [a.assistant_id for a in found] == ["a4"]
    assert await store.count_assistants(AssistantFilter("bob", ("echo",))) == 0


async def test_an_assistant_keeps_every_version_and_can_go_back(store: Store) -> None:
    made, created = await store.add_assistant(assistant("a", "one", metadata={"v": 1}))
    assert created
    again, created = await store.add_assistant(assistant("a", "other"))
    assert (again, created) == (made, False)
    changed = await store.change_assistant(
        "a", "ann", lambda a: dataclasses.replace(a, name="two", metadata={"v": 2}, updated_at=5.0)
    )
    assert changed is not None
    assert (changed.version, changed.name) == (2, "two")
    assert await store.change_assistant("a", "bob", lambda a: a) is None
    versions = await store.assistant_versions("a", metadata={}, limit=10, offset=0)
    assert [(v.version, v.name, v.created_at) for v in versions] == [
        (2, "two", 5.0),
        (1, "one", 1.0),
    ]
    old = await store.assistant_versions("a", metadata={"v": 1}, limit=10, offset=0)
    assert [v.version for v in old] == [1]
    back = await store.set_latest_assistant("a", "ann", 1, 6.0)
    assert back is not None
    assert (back.version, back.name, back.created_at, back.updated_at) == (1, "one", 1.0, 6.0)
    assert await store.get_assistant("a") == back
    assert await store.set_latest_assistant("a", "ann", 9, 6.0) is None
    assert not await store.delete_assistant("a", "bob")
    assert await store.delete_assistant("a", "ann")
    assert await store.get_assistant("a") is None
    assert await store.assistant_versions("a", metadata={}, limit=10, offset=0) == []


# -- items ------------------------------------------------------------------------


async def test_items_are_found_under_a_prefix_and_only_by_their_owner(store: Store) -> None:
    for namespace, key, n in [
        (("a",), "k1", 1), (("a", "b"), "k2", 2), (("a b",), "k3", 3), (("ab",), "k4", 4),
        (("a", "c", "d"), "k5", 5),
    ]:  # fmt: skip
        await store.put_item("ann", namespace, key, {"n": n})
    await store.put_item("bob", ("a",), "k1", {"n": 0})

    async def keys(prefix: tuple[str, ...], **query: Any) -> list[str]:
        return [i.key for i in await store.search_items("ann", prefix, **query)]

    assert await keys(("a",)) == ["k5", "k2", "k1"]  # newest first; "a b" and "ab" are not under
    assert await keys(("a",), filter={"n": {"$gte": 2}}, limit=1, offset=1) == ["k2"]
    assert await keys(()) == ["k5", "k4", "k3", "k2", "k1"]
    assert await keys((), limit=2, offset=1) == ["k4", "k3"]
    item = await store.get_item("ann", ("a", "b"), "k2")
    assert item is not None
    assert (item.namespace, item.value, item.owner) == (("a", "b"), {"n": 2}, "ann")
    assert await store.list_namespaces("ann", prefix=("a", "*")) == [("a", "b"), ("a", "c", "d")]
    assert await store.list_namespaces("ann", suffix=("d",)) == [("a", "c", "d")]
    assert await store.list_namespaces("ann", max_depth=1, limit=2, offset=1) == [("a b",), ("ab",)]
    await store.delete_item("ann", ("a", "b"), "k2")
    assert await store.get_item("ann", ("a", "b"), "k2") is None
    assert [i.value for i in await store.search_items("bob", ())] == [{"n": 0}]


async def test_an_item_with_a_ttl_expires_and_is_purged(store: Store) -> None:
    await store.put_item("ann", ("a",), "short", {"v": 1}, ttl=0.5 / 60)  # half a second
    await store.put_item("ann", ("a",), "forever", {"v": 2})
    first = await store.get_item("ann", ("a",), "short")
    assert first is not None
    assert first.expires_at is not None
    await trio.sleep(0.6)
    assert await store.get_item("ann", ("a",), "short") is None
    assert [i.key for i in await store.search_items("ann", ())] == ["forever"]
    await store.put_item("ann", ("a",), "short", {"v": 3})  # starts afresh
    again = await store.get_item("ann", ("a",), "short")
    assert again is not None
    assert again.created_at > first.created_at
    await store.put_item("ann", ("a",), "gone", {"v": 4}, ttl=1)
    assert await store.purge_items(before=time.time() + 120) == 1
    assert await store.get_item("ann", ("a",), "gone") is None


async def test_a_value_with_a_lone_surrogate_is_kept_as_its_escape(store: Store) -> None:
    # UTF-8 cannot carry it; JSON's escape can, and reads back as the same string.
    await store.put_item("ann", ("a",), "k", {"v": "half: \ud800"})
    item = await store.get_item("ann", ("a",), "k")
    assert item is not None
    assert item.value == {"v": "half: \ud800"}


# -- crons ------------------------------------------------------------------------


def cron(cron_id: str, **fields: Any) -> Cron:
    values: dict[str, Any] = dict(
        assistant_id="echo", thread_id=None, schedule="@daily", timezone=None, payload={},
        metadata={}, created_at=1.0, updated_at=1.0, next_run_at=100.0, owner="ann",
    )  # fmt: skip
    return Cron(cron_id, **(values | fields))


async def test_a_due_cron_time_is_claimed_once_and_its_run_clears_the_claim(
    store: Store,
) -> None:
    await store.put_cron(cron("late", next_run_at=100.0))
    await store.put_cron(cron("early", next_run_at=50.0))
    await store.put_cron(cron("off", next_run_at=10.0, enabled=False))
    await store.put_cron(cron("later", next_run_at=500.0))
    assert [c.cron_id for c in await store.due_crons(100.0, 10)] == ["early", "late"]
    assert await store.next_cron_at() == 50.0
    assert await store.claim_cron("early", 50.0, 150.0, "t1", 60.0)
    assert not await store.claim_cron("early", 50.0, 150.0, "t2", 60.0)
    assert [c.cron_id for c in await store.due_crons(100.0, 10)] == ["late"]
    assert [c.cron_id for c in await store.stale_claims(61.0)] == ["early"]
    assert await store.retake_claim("early", "t1", "t3", 70.0)
    assert not await store.retake_claim("early", "t1", "t4", 70.0)
    run = new_run("r", "t", 71.0, metadata={"cron_id": "early"}, kwargs={CLAIM_KEY: "t3"})
    await store.commit(Batch(created=[(run, Thread("t", 71.0, 71.0))]))
    fired = await store.get_cron("early")
    assert fired is not None
    assert (fired.claim, fired.claimed_at, fired.next_run_at) == (None, None, 150.0)
    assert await store.claim_cron("late", 100.0, None, "t5", 101.0)
    await store.release_claim("late", "t5")
    released = await store.get_cron("late")
    assert released is not None
    assert (released.claim, released.next_run_at) == (None, None)
    assert await store.next_cron_at() == 150.0


async def test_crons_sort_with_no_end_time_first_and_change_only_for_their_owner(
    store: Store,
) -> None:
    await store.put_cron(cron("c1", end_time=20.0, metadata={"k": 1}))
    await store.put_cron(cron("c2", end_time=None))
    await store.put_cron(cron("c3", end_time=10.0, thread_id="t"))

    async def ids(**query: Any) -> list[str]:
        args: dict[str, Any] = dict(
            owner="ann", assistant_id=None, thread_id=None, enabled=None, metadata={},
            sort_by="end_time", descending=False, limit=10, offset=0,
        ) | query  # fmt: skip
        return [c.cron_id for c in await store.search_crons(**args)]

    assert await ids() == ["c2", "c3", "c1"]
    assert await ids(descending=True) == ["c1", "c3", "c2"]
    assert await ids(thread_id="t") == ["c3"]
    assert await ids(metadata={"k": 1}) == ["c1"]
    assert await ids(enabled=False) == []
    count = await store.count_crons(owner="ann", assistant_id="echo", thread_id=None, metadata={})
    assert count == 3
    assert await store.change_cron("c1", "bob", lambda c: c) is None
    changed = await store.change_cron("c1", "ann", lambda c: dataclasses.replace(c, enabled=False))
    assert changed is not None
    assert await store.get_cron("c1") == changed
    assert await ids(enabled=False) == ["c1"]
    assert not await store.delete_cron("c1", "bob")
    assert await store.delete_cron("c1", "ann")
    assert await store.get_cron("c1") is None


# -- the webhook outbox -------------------------------------------------------------


async def test_a_webhook_is_written_with_its_run_leased_once_and_purged_when_settled(
    store: Store,
) -> None:
    run = new_run("r", "t", 1.0)
    delivery = Delivery("r", "t", "ann", "https://example.com/hook", {"run_id": "r"}, 9.0, 9.0, 9.0)
    await store.commit(
        Batch(created=[(run, Thread("t", 1.0, 1.0))], finals=[final(run, webhook=delivery)])
    )
    assert await store.get_delivery("r") == delivery
    assert await store.due_deliveries(9.0, 10) == [delivery]
    assert await store.next_delivery_at() == 9.0
    assert await store.lease_delivery("r", 9.0, 19.0, 10.0)
    assert not await store.lease_delivery("r", 9.0, 19.0, 10.0)
    assert await store.due_deliveries(10.0, 10) == []
    attempt = DeliveryAttempt("r", 1, 10.0, "delivered", 200, 0.5)
    await store.record_attempt(attempt, DeliveryState.DELIVERED, 19.0)
    settled = await store.get_delivery("r")
    assert settled is not None
    assert (settled.state, settled.attempts, settled.updated_at) == (
        DeliveryState.DELIVERED, 1, 10.5
    )  # fmt: skip
    assert await store.delivery_attempts("r") == [attempt]
    assert await store.next_delivery_at() is None
    assert await store.purge(20.0) == 1
    assert await store.get_delivery("r") is None
    assert await store.delivery_attempts("r") == []


# -- a busy database ------------------------------------------------------------

BOUND = 0.3  # seconds: the busy bound the tests below shrink BUSY_RETRY_SECONDS to


async def test_a_write_that_stays_busy_past_the_bound_raises_store_error_and_writes_nothing(
    store: Store, db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(retry, "BUSY_RETRY_SECONDS", BOUND)
    start = trio.current_time()
    with locked(db), pytest.raises(StoreError, match="stayed locked; write abandoned"):
        await store.put_thread(Thread("t", 1.0, 1.0))
    assert trio.current_time() - start >= BOUND
    assert await store.get_thread("t") is None


async def test_a_deadline_ends_the_retries_of_a_busy_write_long_before_the_bound(
    store: Store, db: str
) -> None:
    start = trio.current_time()
    with locked(db), trio.move_on_after(BOUND) as scope:
        await store.put_thread(Thread("t", 1.0, 1.0))
    assert scope.cancelled_caught
    assert trio.current_time() - start < retry.BUSY_RETRY_SECONDS / 2
    assert await store.get_thread("t") is None


async def test_a_read_that_stays_busy_past_the_bound_raises_store_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Under WAL (the store's mode) a writer never blocks a reader; with a
    # rollback journal BEGIN EXCLUSIVE keeps every read out, so the read stays busy.
    path = str(tmp_path / "rollback-journal.sqlite3")
    setup = sqlite3.connect(path, isolation_level=None)
    setup.execute("CREATE TABLE t (x)")
    setup.close()
    reader = sqlite3.connect(path, check_same_thread=False, timeout=0)
    monkeypatch.setattr(retry, "BUSY_RETRY_SECONDS", BOUND)
    start = trio.current_time()
    with locked(path), pytest.raises(StoreError, match="stayed locked; read abandoned"):
        await retry.retry_busy(
            trio.CapacityLimiter(1),
            lambda: reader.execute("SELECT x FROM t").fetchall(),
            action="read",
        )
    assert trio.current_time() - start >= BOUND
    reader.close()


# -- the SQLite file --------------------------------------------------------------


async def test_a_sqlite_file_is_in_wal_mode(sqlite_store: SQLiteStore, db_path: str) -> None:
    conn = sqlite3.connect(db_path)
    assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)


async def test_a_corrupt_file_is_refused_and_left_untouched(db_path: str) -> None:
    garbage = b"this is not a database, whatever its name says" * 100
    Path(db_path).write_bytes(garbage)
    with pytest.raises(StoreUnusable, match="not a usable runyard database"):
        await SQLiteStore(db_path).open()
    assert Path(db_path).read_bytes() == garbage


# Schema 1 as every existing database holds it: (name, type, not null, primary key).
SCHEMA_1 = {
    "threads": [
        ("thread_id", "TEXT", 0, 1),
        ("owner", "TEXT", 0, 0),
        ("created_at", "REAL", 0, 0),
        ("updated_at", "REAL", 0, 0),
        ("metadata", "TEXT", 0, 0),
        ("status", "TEXT", 0, 0),
        ("state", "TEXT", 0, 0),
    ],
    "runs": [
        ("run_id", "TEXT", 0, 1),
        ("thread_id", "TEXT", 0, 0),
        ("owner", "TEXT", 0, 0),
        ("assistant_id", "TEXT", 0, 0),
        ("created_at", "REAL", 0, 0),
        ("updated_at", "REAL", 0, 0),
        ("status", "TEXT", 0, 0),
        ("cancel_reason", "TEXT", 0, 0),
        ("error", "TEXT", 0, 0),
        ("output", "TEXT", 0, 0),
        ("metadata", "TEXT", 0, 0),
        ("kwargs", "TEXT", 0, 0),
        ("multitask_strategy", "TEXT", 0, 0),
        ("attempt", "INTEGER", 0, 0),
    ],
    "events": [
        ("run_id", "TEXT", 1, 1),
        ("seq", "INTEGER", 1, 2),
        ("event", "TEXT", 1, 0),
        ("data", "TEXT", 1, 0),
    ],
    "meta": [("key", "TEXT", 0, 1), ("value", "TEXT", 0, 0)],
}

# The statements that wrote schema 1 before the tables were described (via sqlite-utils).
SCHEMA_1_SQL = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE "threads" ("thread_id" TEXT PRIMARY KEY, "owner" TEXT, "created_at" REAL,
    "updated_at" REAL, "metadata" TEXT, "status" TEXT, "state" TEXT);
CREATE TABLE "runs" ("run_id" TEXT PRIMARY KEY, "thread_id" TEXT, "owner" TEXT,
    "assistant_id" TEXT, "created_at" REAL, "updated_at" REAL, "status" TEXT,
    "cancel_reason" TEXT, "error" TEXT, "output" TEXT, "metadata" TEXT, "kwargs" TEXT,
    "multitask_strategy" TEXT, "attempt" INTEGER);
CREATE INDEX "idx_runs_thread_id_created_at" ON "runs" ("thread_id", "created_at");
CREATE INDEX "idx_runs_status" ON "runs" ("status");
CREATE TABLE events (run_id TEXT NOT NULL, seq INTEGER NOT NULL, event TEXT NOT NULL,
    data TEXT NOT NULL, PRIMARY KEY (run_id, seq)) WITHOUT ROWID;
INSERT INTO meta VALUES ('schema_version', '1');
"""


# What schema 2 added: pending interrupts on threads, and these tables.
SCHEMA_2_TABLES = {
    "checkpoints",
    "checkpoint_blobs",
    "checkpoint_writes",
    "assistants",
    "assistant_versions",
    "items",
}
SCHEMA_2_INDEXES = ["idx_assistants_owner_graph_id", "idx_checkpoints_run_id"]
# What schema 3 added: crons and the webhook outbox.
SCHEMA_3_TABLES = {"crons", "webhooks", "webhook_attempts"}
SCHEMA_3_INDEXES = [
    "idx_crons_next_run_at", "idx_crons_owner_created_at", "idx_webhooks_state_next_attempt_at"
]  # fmt: skip


def _columns(conn: sqlite3.Connection, table: str) -> list[tuple[str, str, int, int]]:
    info = conn.execute(f"PRAGMA table_info({table})").fetchall()
    return [(name, kind, notnull, pk) for _, name, kind, notnull, _, pk in info]


def _tables_and_indexes(conn: sqlite3.Connection) -> tuple[set[str], list[str]]:
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    indexes = conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
    )
    return tables, sorted(r[0] for r in indexes)


async def test_migrating_a_fresh_file_creates_the_columns_keys_and_indexes_of_schema_3(
    sqlite_store: SQLiteStore, db_path: str
) -> None:
    conn = sqlite3.connect(db_path)
    tables, indexes = _tables_and_indexes(conn)
    assert tables == set(SCHEMA_1) | SCHEMA_2_TABLES | SCHEMA_3_TABLES
    for table, columns in SCHEMA_1.items():
        added = [("interrupts", "TEXT", 0, 0)] if table == "threads" else []
        assert _columns(conn, table) == columns + added
    assert [c for c in _columns(conn, "checkpoints") if c[3]] == [
        ("thread_id", "TEXT", 1, 1),
        ("checkpoint_ns", "TEXT", 1, 2),
        ("checkpoint_id", "TEXT", 1, 3),
    ]
    assert indexes == sorted(
        ["idx_runs_status", "idx_runs_thread_id_created_at", *SCHEMA_2_INDEXES, *SCHEMA_3_INDEXES]
    )
    assert conn.execute("PRAGMA index_info(idx_runs_thread_id_created_at)").fetchall() == [
        (0, 1, "thread_id"),
        (1, 4, "created_at"),
    ]
    events = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'events'").fetchone()[0]
    assert events.endswith("WITHOUT ROWID")


async def test_a_database_written_by_schema_1_is_upgraded_in_place_and_reads_back(
    db_path: str, tmp_path: Path
) -> None:
    conn = sqlite3.connect(db_path, isolation_level=None)
    conn.executescript(SCHEMA_1_SQL)
    # The rows as the first schema's INSERTs wrote them, by position.
    conn.execute("INSERT INTO threads VALUES ('t', 'ann', 1.0, 2.0, '{}', 'busy', 'null')")
    conn.execute(
        "INSERT INTO runs VALUES ('r', 't', 'ann', 'echo', 1.0, 2.0, 'running', NULL, NULL,"
        """ 'null', '{"k":"v"}', '{}', 'enqueue', 1)"""
    )
    conn.execute("""INSERT INTO events VALUES ('r', 0, 'metadata', '{"run_id":"r"}')""")
    schema = conn.execute("SELECT * FROM sqlite_master").fetchall()
    store = SQLiteStore(db_path)
    await store.open()
    try:
        run = await store.get_run("r")
        thread = await store.get_thread("t")
        events = await store.read_events("r", -1, 10)
    finally:
        await store.aclose()
    assert run == Run(
        "r", "t", "echo", RunStatus.RUNNING, 1.0, 2.0, {"k": "v"}, {}, owner="ann", attempt=1
    )
    assert thread == Thread("t", 1.0, 2.0, {}, ThreadStatus.BUSY, None, owner="ann")
    assert [(e.seq, e.event, e.value()) for e in events] == [(0, "metadata", {"run_id": "r"})]
    # Schema 1's tables are kept as they were written; schemas 2 and 3 only add.
    assert set(conn.execute("SELECT * FROM sqlite_master").fetchall()) > {
        row for row in schema if row[1] != "threads"
    }
    assert conn.execute("SELECT value FROM meta").fetchone() == (str(SCHEMA_VERSION),)
    fresh = SQLiteStore(str(tmp_path / "fresh.sqlite3"))
    await fresh.open()
    await fresh.aclose()
    fresh_conn = sqlite3.connect(fresh.path)
    assert _tables_and_indexes(conn) == _tables_and_indexes(fresh_conn)
    for table in _tables_and_indexes(conn)[0]:
        assert _columns(conn, table) == _columns(fresh_conn, table)


async def test_a_database_written_by_schema_2_gains_crons_and_the_outbox_and_keeps_its_rows(
    db_path: str, tmp_path: Path
) -> None:
    # A schema 2 file: the newest one less what schema 3 added.
    written = SQLiteStore(db_path)
    await written.open()
    await written.put_thread(Thread("t", 1.0, 2.0, {"k": "v"}, owner="ann"))
    await written.aclose()
    conn = sqlite3.connect(db_path, isolation_level=None)
    for table in SCHEMA_3_TABLES:
        conn.execute(f"DROP TABLE {table}")
    conn.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")
    store = SQLiteStore(db_path)
    await store.open()
    try:
        thread = await store.get_thread("t")
        cron = Cron("c", "echo", None, "@daily", None, {}, {}, 1.0, 1.0, 86400.0, owner="ann")
        await store.put_cron(cron)
        assert await store.get_cron("c") == cron
    finally:
        await store.aclose()
    assert thread == Thread("t", 1.0, 2.0, {"k": "v"}, owner="ann")
    assert conn.execute("SELECT value FROM meta").fetchone() == ("3",)
    fresh = SQLiteStore(str(tmp_path / "fresh.sqlite3"))
    await fresh.open()
    await fresh.aclose()
    fresh_conn = sqlite3.connect(fresh.path)
    assert _tables_and_indexes(conn) == _tables_and_indexes(fresh_conn)
    for table in SCHEMA_3_TABLES:
        assert _columns(conn, table) == _columns(fresh_conn, table)
