"""The group-commit writer, on its own: batching, ordering, back-pressure, faults.

Every test drives a :class:`CommitWriter` against a real SQLite file. The store
records what each transaction wrote and can be held (commits wait for
:meth:`RecordingStore.release`) or told to fail, so the tests decide exactly
what is in flight when; ``wait_all_tasks_blocked`` tells them when the writer
has got as far as it can.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import trio
import trio.testing

from runyard import commit
from runyard.commit import CommitWriter
from runyard.errors import StoreError
from runyard.events import RunLog
from runyard.model import Event, Run, RunStatus, Thread, ThreadStatus, new_id, now
from runyard.store import Batch, FinalState, SQLiteStore

pytestmark = pytest.mark.trio

# How long a wait may take before the test calls it a hang.
HANG = 5.0


class RecordingStore(SQLiteStore):
    """A real SQLite store that keeps every batch it committed, in order.

    :meth:`hold` makes commits wait (after they begin, before they write) until
    :meth:`release`; :meth:`fail_next` makes the next commit to begin raise.
    """

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.transactions: list[Batch] = []
        self.attempts = 0
        self._fail: set[int] = set()  # numbers of the attempts that raise
        self._gate = trio.Event()
        self._gate.set()

    def hold(self) -> None:
        self._gate = trio.Event()

    def release(self) -> None:
        self._gate.set()

    def fail_next(self) -> None:
        self._fail.add(self.attempts + 1)

    async def commit(self, batch: Batch) -> None:
        self.attempts += 1
        attempt = self.attempts
        await self._gate.wait()
        if attempt in self._fail:
            raise StoreError("injected: the disk said no")
        await super().commit(batch)
        self.transactions.append(batch)

    def where(self, run_id: str) -> dict[str, list[int]]:
        """The transactions (by index) that wrote the run's events, running mark, final."""
        found: dict[str, list[int]] = {"events": [], "running": [], "final": []}
        for i, b in enumerate(self.transactions):
            found["events"] += [i for e in b.events if e.run_id == run_id]
            found["running"] += [i for r, _ in b.running if r == run_id]
            found["final"] += [i for f in b.finals if f.run_id == run_id]
        return found

    def committed(self) -> set[tuple[str, int]]:
        """(run id, seq) of every event committed so far, final states' included."""
        keys = {(e.run_id, e.seq) for b in self.transactions for e in b.events}
        keys |= {(e.run_id, e.seq) for b in self.transactions for f in b.finals for e in f.events}
        return keys


@pytest.fixture
async def store(db_path: str) -> AsyncIterator[RecordingStore]:
    s = RecordingStore(db_path)
    await s.open()
    try:
        yield s
    finally:
        await s.aclose()


@pytest.fixture
async def writer(store: RecordingStore, nursery: trio.Nursery) -> AsyncIterator[CommitWriter]:
    w = CommitWriter(store)
    await nursery.start(w.serve)
    yield w
    store.release()
    with trio.fail_after(HANG):
        await w.aclose()


def pending_run() -> tuple[Run, Thread]:
    """A new pending run on a new thread, not stored yet."""
    ts = now()
    thread = Thread(new_id(), ts, ts)
    return Run(new_id(), thread.thread_id, "echo", RunStatus.PENDING, ts, ts), thread


async def new_run(writer: CommitWriter) -> Run:
    """A pending run on a new thread, committed through the writer."""
    run, thread = pending_run()
    await writer.create(run, thread)
    return run


def ending(run: Run, run_log: RunLog, *, output: Any = None) -> FinalState:
    """A successful final state whose only event is the run's ``end``."""
    end = {"run_id": run.run_id, "status": str(RunStatus.SUCCESS)}
    return FinalState(
        run_id=run.run_id,
        thread_id=run.thread_id,
        status=RunStatus.SUCCESS,
        cancel_reason=None,
        error=None,
        output=output,
        updated_at=now(),
        events=[Event.make(run.run_id, run_log.take_seq(), "end", end)],
        thread_status=ThreadStatus.IDLE,
    )


def received(receive: trio.MemoryReceiveChannel[list[Event]]) -> list[list[Event]]:
    """The batches a subscriber holds right now, without waiting."""
    batches: list[list[Event]] = []
    while True:
        try:
            batches.append(receive.receive_nowait())
        except (trio.WouldBlock, trio.EndOfChannel):
            return batches


def flat(batches: list[list[Event]]) -> list[Event]:
    return [e for batch in batches for e in batch]


def attach(run_log: RunLog) -> trio.MemoryReceiveChannel[list[Event]]:
    receive = run_log.attach()
    assert receive is not None
    return receive


async def stored(store: SQLiteStore, run_id: str) -> list[Event]:
    return await store.read_events(run_id, -1, 1_000_000)


async def stored_status(store: SQLiteStore, run_id: str) -> RunStatus:
    run = await store.get_run(run_id)
    assert run is not None
    return run.status


# -- batching ---------------------------------------------------------------------


async def test_events_appended_during_a_transaction_share_the_next_ones(
    store: RecordingStore, writer: CommitWriter
) -> None:
    runs = [await new_run(writer) for _ in range(5)]
    logs = [RunLog(r.run_id) for r in runs]
    before = writer.transactions
    store.hold()
    writer.append_nowait(logs[0], "metadata", {})
    await trio.testing.wait_all_tasks_blocked()  # that one event is in flight
    for i in range(300):
        for run_log in logs:
            writer.append_nowait(run_log, "values", {"i": i})
    store.release()
    await writer.aclose()

    # 1 + 1500 events in three transactions: the one in flight, then MAX_BATCH, then the rest.
    assert writer.transactions - before == 3
    assert [len(b.events) for b in store.transactions[-3:]] == [1, commit.MAX_BATCH, 476]
    for run_log in logs:
        events = await stored(store, run_log.run_id)
        assert [e.seq for e in events] == list(range(run_log.next_seq))
        assert [e.value()["i"] for e in events if e.event == "values"] == list(range(300))


async def test_a_new_run_its_running_mark_and_first_event_commit_in_one_transaction(
    store: RecordingStore, writer: CommitWriter
) -> None:
    run, thread = pending_run()
    before = writer.transactions
    first = await writer.create(run, thread, running_at=now(), first=("metadata", {"n": 1}))
    assert writer.transactions - before == 1
    assert first is not None
    assert (first.run_id, first.seq, first.event) == (run.run_id, 0, "metadata")
    last = len(store.transactions) - 1
    assert store.where(run.run_id) == {"events": [last], "running": [last], "final": []}
    assert [(e.seq, e.value()) for e in await stored(store, run.run_id)] == [(0, {"n": 1})]
    assert await stored_status(store, run.run_id) is RunStatus.RUNNING


async def test_a_writer_that_commits_only_final_states_leaves_the_first_event_to_the_log(
    store: RecordingStore, nursery: trio.Nursery
) -> None:
    writer = CommitWriter(store, durable=False)
    await nursery.start(writer.serve)
    run, thread = pending_run()
    assert await writer.create(run, thread, first=("metadata", {})) is None
    assert await stored(store, run.run_id) == []
    await writer.aclose()


async def test_an_idle_writer_commits_a_lone_event_at_once(
    store: RecordingStore, writer: CommitWriter
) -> None:
    run = await new_run(writer)
    run_log = RunLog(run.run_id)
    receive = attach(run_log)
    writer.append_nowait(run_log, "values", {"n": 1})
    with trio.fail_after(HANG):
        batch = await receive.receive()
    assert [e.seq for e in batch] == [0]
    assert [e.seq for e in await stored(store, run.run_id)] == [0]


# -- publishing -------------------------------------------------------------------


async def test_a_subscriber_receives_nothing_the_store_has_not_committed(
    store: RecordingStore, writer: CommitWriter
) -> None:
    run = await new_run(writer)
    run_log = RunLog(run.run_id)
    receive = attach(run_log)
    store.hold()
    for i in range(3):
        writer.append_nowait(run_log, "values", {"i": i})
    await trio.testing.wait_all_tasks_blocked()  # the commit has begun and waits
    assert received(receive) == []
    assert await stored(store, run.run_id) == []

    store.release()
    with trio.fail_after(HANG):
        batch = await receive.receive()
    assert [e.seq for e in batch] == [0, 1, 2]
    assert await stored(store, run.run_id) == batch


async def test_every_batch_a_subscriber_receives_was_committed_before_it_arrived(
    store: RecordingStore, writer: CommitWriter
) -> None:
    runs = [await new_run(writer) for _ in range(3)]
    logs = [RunLog(r.run_id) for r in runs]
    seen: dict[str, list[int]] = {}

    async def subscribe(run_log: RunLog) -> None:
        seqs = seen.setdefault(run_log.run_id, [])
        async for batch in attach(run_log):
            assert {(e.run_id, e.seq) for e in batch} <= store.committed()
            seqs.extend(e.seq for e in batch)

    async def emit(run: Run, run_log: RunLog) -> None:
        for i in range(200):
            writer.append_nowait(run_log, "values", {"i": i})
            if i % 7 == 0:
                await trio.lowlevel.checkpoint()
        await writer.finalize(run_log, ending(run, run_log))

    async with trio.open_nursery() as inner:
        for run_log in logs:
            inner.start_soon(subscribe, run_log)
        for run, run_log in zip(runs, logs, strict=True):
            inner.start_soon(emit, run, run_log)

    assert seen == {run_log.run_id: list(range(201)) for run_log in logs}


async def test_without_durability_events_are_published_at_once_and_stored_with_the_end(
    store: RecordingStore, nursery: trio.Nursery
) -> None:
    writer = CommitWriter(store, durable=False)
    await nursery.start(writer.serve)
    run = await new_run(writer)
    run_log = RunLog(run.run_id, keep_all=True)  # memory is the only copy until the end
    receive = attach(run_log)
    transactions = writer.transactions

    for i in range(3):
        writer.append_nowait(run_log, "values", {"i": i})
        assert [[e.seq for e in b] for b in received(receive)] == [[i]]
    await trio.testing.wait_all_tasks_blocked()
    assert writer.transactions == transactions
    assert await stored(store, run.run_id) == []

    await writer.finalize(run_log, ending(run, run_log, output={"i": 2}))
    assert writer.transactions == transactions + 1
    assert [e.seq for e in flat(received(receive))] == [3]
    events = await stored(store, run.run_id)
    assert [(e.seq, e.event) for e in events] == [
        (0, "values"),
        (1, "values"),
        (2, "values"),
        (3, "end"),
    ]
    assert await stored_status(store, run.run_id) is RunStatus.SUCCESS
    await writer.aclose()


# -- back-pressure ----------------------------------------------------------------


async def test_a_full_queue_blocks_emitters_until_a_commit_drains_it(
    store: RecordingStore,
    writer: CommitWriter,
    nursery: trio.Nursery,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(commit, "MAX_PENDING", 10)
    run = await new_run(writer)
    run_log = RunLog(run.run_id)
    store.hold()
    writer.append_nowait(run_log, "values", {"i": 0})
    await trio.testing.wait_all_tasks_blocked()  # one event in flight, still pending
    full = []
    for i in range(1, 10):
        writer.append_nowait(run_log, "values", {"i": i})
        full.append(writer.full)
    assert full == [False] * 8 + [True]  # full once MAX_PENDING are uncommitted

    room = trio.Event()

    async def emitter() -> None:
        await writer.wait_for_room()
        room.set()

    nursery.start_soon(emitter)
    await trio.testing.wait_all_tasks_blocked()
    assert not room.is_set()

    store.release()  # the one-event commit lands: nine pending, under the limit
    with trio.fail_after(HANG):
        await room.wait()
    assert not writer.full
    await writer.aclose()
    assert [e.seq for e in await stored(store, run.run_id)] == list(range(10))


# -- cancelled waiters --------------------------------------------------------------


async def test_cancelling_a_finalize_wait_still_commits_and_publishes_the_end(
    store: RecordingStore, writer: CommitWriter, nursery: trio.Nursery
) -> None:
    run = await new_run(writer)
    run_log = RunLog(run.run_id)
    receive = attach(run_log)
    store.hold()
    writer.append_nowait(run_log, "values", {"i": 0})
    await trio.testing.wait_all_tasks_blocked()  # event 0 in flight
    writer.append_nowait(run_log, "values", {"i": 1})
    cancelled = False

    async def finish(task_status: trio.TaskStatus[trio.CancelScope]) -> None:
        nonlocal cancelled
        with trio.CancelScope() as scope:
            task_status.started(scope)
            await writer.finalize(run_log, ending(run, run_log, output={"i": 1}))
        cancelled = scope.cancelled_caught

    scope = await nursery.start(finish)
    await trio.testing.wait_all_tasks_blocked()
    scope.cancel()
    await trio.testing.wait_all_tasks_blocked()
    assert cancelled

    store.release()
    await writer.aclose()
    assert [(e.seq, e.event) for e in flat(received(receive))] == [
        (0, "values"),
        (1, "values"),
        (2, "end"),
    ]
    assert run_log.ended
    assert [e.seq for e in await stored(store, run.run_id)] == [0, 1, 2]
    assert await stored_status(store, run.run_id) is RunStatus.SUCCESS


async def test_a_cancelled_mark_running_wait_is_still_committed_before_the_final_state(
    store: RecordingStore, writer: CommitWriter
) -> None:
    run = await new_run(writer)
    run_log = RunLog(run.run_id)
    store.hold()
    writer.append_nowait(run_log, "metadata", {})
    await trio.testing.wait_all_tasks_blocked()  # the metadata event in flight
    with trio.CancelScope() as scope:
        scope.cancel()
        await writer.mark_running(run.run_id, now())
    assert scope.cancelled_caught
    assert await stored_status(store, run.run_id) is RunStatus.PENDING

    store.release()
    await writer.finalize(run_log, ending(run, run_log))
    where = store.where(run.run_id)
    assert len(where["running"]) == 1
    assert where["running"][0] <= where["final"][0]
    assert await stored_status(store, run.run_id) is RunStatus.SUCCESS


# -- failed commits -----------------------------------------------------------------


async def test_a_failed_commit_fails_the_create_and_mark_running_waiting_on_it(
    store: RecordingStore, writer: CommitWriter
) -> None:
    running = await new_run(writer)
    fresh, thread = pending_run()
    errors: dict[str, StoreError] = {}

    async def wait_for(name: str, op: Callable[[], Awaitable[object]]) -> None:
        try:
            await op()
        except StoreError as exc:
            errors[name] = exc

    store.hold()
    writer.append_nowait(RunLog(running.run_id), "metadata", {})
    await trio.testing.wait_all_tasks_blocked()  # a commit in flight; the rows queue behind it
    with trio.fail_after(HANG):
        async with trio.open_nursery() as waiting:
            waiting.start_soon(wait_for, "create", lambda: writer.create(fresh, thread))
            waiting.start_soon(
                wait_for, "mark_running", lambda: writer.mark_running(running.run_id, now())
            )
            await trio.testing.wait_all_tasks_blocked()
            store.fail_next()
            store.release()
    assert sorted(errors) == ["create", "mark_running"]
    assert await store.get_run(fresh.run_id) is None
    assert await store.get_thread(thread.thread_id) is None
    assert await stored_status(store, running.run_id) is RunStatus.PENDING

    # The writer carries on: the same row goes in at the next try.
    await writer.create(fresh, thread)
    assert await stored_status(store, fresh.run_id) is RunStatus.PENDING


async def test_events_of_a_failed_commit_are_reported_once_and_stored_with_the_final_state(
    store: RecordingStore, writer: CommitWriter
) -> None:
    run = await new_run(writer)
    run_log = RunLog(run.run_id)
    lost: list[str] = []
    writer.on_lost = lost.append
    store.fail_next()
    for i in range(2):  # the first is lost; the second is held behind it, not tried
        writer.append_nowait(run_log, "values", {"i": i})
        await trio.testing.wait_all_tasks_blocked()
    assert lost == [run.run_id]
    assert await stored(store, run.run_id) == []

    await writer.finalize(run_log, ending(run, run_log))
    assert lost == [run.run_id]
    events = await stored(store, run.run_id)
    assert [(e.seq, e.event) for e in events] == [(0, "values"), (1, "values"), (2, "end")]
    assert await stored_status(store, run.run_id) is RunStatus.SUCCESS


async def test_a_subscriber_receives_events_of_a_failed_commit_once_and_before_the_end(
    store: RecordingStore, writer: CommitWriter
) -> None:
    run = await new_run(writer)
    run_log = RunLog(run.run_id)
    receive = attach(run_log)
    store.fail_next()
    writer.append_nowait(run_log, "values", {"i": 0})
    writer.append_nowait(run_log, "values", {"i": 1})
    await trio.testing.wait_all_tasks_blocked()
    assert received(receive) == []

    await writer.finalize(run_log, ending(run, run_log))
    assert [e.seq for e in flat(received(receive))] == [0, 1, 2]


async def test_a_subscriber_receives_a_run_in_seq_order_after_a_failed_commit(
    store: RecordingStore, writer: CommitWriter
) -> None:
    run = await new_run(writer)
    run_log = RunLog(run.run_id)
    receive = attach(run_log)
    store.fail_next()
    writer.append_nowait(run_log, "values", {"i": 0})
    await trio.testing.wait_all_tasks_blocked()  # event 0 lost
    writer.append_nowait(run_log, "values", {"i": 1})  # held behind the lost one
    await trio.testing.wait_all_tasks_blocked()
    assert received(receive) == []
    assert await stored(store, run.run_id) == []

    await writer.finalize(run_log, ending(run, run_log))
    assert [e.seq for e in await stored(store, run.run_id)] == [0, 1, 2]
    assert [e.seq for e in flat(received(receive))] == [0, 1, 2]


async def test_a_failed_final_commit_raises_and_still_ends_the_stream_with_error_details(
    store: RecordingStore, writer: CommitWriter
) -> None:
    run = await new_run(writer)
    run_log = RunLog(run.run_id)
    receive = attach(run_log)
    writer.append_nowait(run_log, "values", {"i": 0})
    store.hold()
    await trio.testing.wait_all_tasks_blocked()  # event 0 in flight
    writer.append_nowait(run_log, "values", {"i": 1})
    store.fail_next()  # the next commit: event 1 with the final state
    store.release()
    with pytest.raises(StoreError):
        await writer.finalize(run_log, ending(run, run_log))

    events = flat(received(receive))
    assert [(e.seq, e.event) for e in events] == [(0, "values"), (1, "values"), (2, "end")]
    assert events[-1].value()["error_details"] == "the final state could not be persisted"
    assert run_log.ended
    assert [e.seq for e in await stored(store, run.run_id)] == [0]
    assert await stored_status(store, run.run_id) is RunStatus.PENDING


# -- order --------------------------------------------------------------------------


async def test_a_final_state_is_never_committed_before_the_events_queued_ahead_of_it(
    store: RecordingStore, writer: CommitWriter, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(commit, "MAX_BATCH", 4)
    run = await new_run(writer)
    other = await new_run(writer)
    run_log, other_log = RunLog(run.run_id), RunLog(other.run_id)
    first = len(store.transactions)
    for i in range(10):
        writer.append_nowait(run_log, "values", {"i": i})
        writer.append_nowait(other_log, "values", {"i": i})
    async with trio.open_nursery() as finishing:
        finishing.start_soon(writer.finalize, run_log, ending(run, run_log))
        finishing.start_soon(writer.finalize, other_log, ending(other, other_log))

    for r in (run, other):
        where = store.where(r.run_id)
        assert len(where["final"]) == 1
        assert max(where["events"]) <= where["final"][0]
        assert [e.seq for e in await stored(store, r.run_id)] == list(range(11))
        assert await stored_status(store, r.run_id) is RunStatus.SUCCESS
    # Twenty events and two finals, at most four to a transaction.
    assert len(store.transactions) - first == 6


# -- a stopped writer ---------------------------------------------------------------


async def test_a_closed_writer_refuses_new_rows_instead_of_hanging(
    store: RecordingStore, writer: CommitWriter
) -> None:
    run = await new_run(writer)
    await writer.aclose()
    fresh, thread = pending_run()
    with trio.fail_after(HANG):
        with pytest.raises(StoreError):
            await writer.create(fresh, thread)
        with pytest.raises(StoreError):
            await writer.mark_running(run.run_id, now())
    assert await store.get_run(fresh.run_id) is None
    assert await stored_status(store, run.run_id) is RunStatus.PENDING


async def test_a_cancelled_writer_fails_the_rows_it_held_and_refuses_new_ones(
    store: RecordingStore, nursery: trio.Nursery
) -> None:
    writer = CommitWriter(store)
    errors: list[StoreError] = []

    async def mark(run: Run) -> None:
        try:
            await writer.mark_running(run.run_id, now())
        except StoreError as exc:
            errors.append(exc)

    async with trio.open_nursery() as serving:
        await serving.start(writer.serve)
        run = await new_run(writer)
        store.hold()
        nursery.start_soon(mark, run)  # in flight when the writer is cancelled
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(mark, run)  # queued behind it
        await trio.testing.wait_all_tasks_blocked()
        serving.cancel_scope.cancel()

    await trio.testing.wait_all_tasks_blocked()
    assert len(errors) == 2
    with trio.fail_after(HANG), pytest.raises(StoreError):
        await writer.mark_running(run.run_id, now())
    await writer.aclose()  # returns at once: the writer has stopped
    assert await stored_status(store, run.run_id) is RunStatus.PENDING


async def test_small_commits_are_checkpointed_into_the_database_file(db_path: str) -> None:
    # Automatic WAL checkpoints are off (they would stall a write made on trio's
    # thread); the store starts them itself every few MiB, in a thread of their own.
    from runyard.store import connection

    store = SQLiteStore(db_path)
    await store.open()
    try:
        run, thread = pending_run()
        await store.commit(Batch(created=[(run, thread)]))
        text = "x" * (connection.INLINE_WRITE_BYTES // 4)
        batches = 2 * connection.CHECKPOINT_EVERY_BYTES // len(text)
        for seq in range(batches):
            await store.commit(Batch(events=[Event.make(run.run_id, seq, "custom", text)]))
        assert await store.last_seq(run.run_id) == batches - 1
    finally:
        await store.aclose()  # waits for the checkpoint under way
    # The events reached the database file itself, not only its WAL.
    assert os.path.getsize(db_path) > connection.CHECKPOINT_EVERY_BYTES
