"""The supervisor: statuses, cancellation, multitask strategies, timing, recovery."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
import trio
import trio.testing

from runyard.agents import Agent, RunContext
from runyard.config import Settings
from runyard.coordinator import LocalCoordinator
from runyard.errors import Conflict, NotFound, ShuttingDown, StoreError
from runyard.model import CancelReason, MultitaskStrategy, Run, RunRequest, RunStatus, ThreadStatus
from runyard.store import Batch, SQLiteStore
from runyard.supervisor import Supervisor

from .helpers import assert_gapless, collect, freeze, serving, start_supervisor, stored_events

pytestmark = pytest.mark.trio


async def _stored(store: SQLiteStore, run_id: str) -> Run:
    run = await store.get_run(run_id)
    assert run is not None
    return run


async def test_emitter_run_persists_success_and_a_complete_log(
    supervisor: Supervisor, store: SQLiteStore
) -> None:
    handle = await supervisor.create_run(RunRequest("emitter", {"n": 3}))
    run = await supervisor.wait_run(handle.run_id)
    assert run.status is RunStatus.SUCCESS
    stored = await _stored(store, handle.run_id)
    assert stored.status is RunStatus.SUCCESS
    assert stored.output == {"done": 3}
    events = await stored_events(store, handle.run_id)
    assert_gapless(events)
    assert [e.event for e in events] == ["metadata", "custom", "custom", "custom", "values", "end"]
    assert events[0].value() == {"run_id": handle.run_id, "attempt": 1}
    assert events[-1].value() == {"run_id": handle.run_id, "status": "success"}
    thread = await store.get_thread(stored.thread_id)
    assert thread is not None
    assert thread.status is ThreadStatus.IDLE
    assert thread.values == {"done": 3}


async def test_failing_agent_ends_error_without_leaking_its_message(
    supervisor: Supervisor, store: SQLiteStore
) -> None:
    handle = await supervisor.create_run(RunRequest("failing", {"delay": 0}))
    await supervisor.wait_run(handle.run_id)
    stored = await _stored(store, handle.run_id)
    assert stored.status is RunStatus.ERROR
    assert stored.error is not None
    assert stored.error.error == "DemoFailure"
    events = await stored_events(store, handle.run_id)
    assert [e.event for e in events] == ["metadata", "error", "end"]
    everything = json.dumps([e.data for e in events]) + json.dumps(stored.error.to_json())
    assert "SECRET" not in everything
    assert "hunter2" not in everything
    thread = await store.get_thread(stored.thread_id)
    assert thread is not None
    assert thread.status is ThreadStatus.ERROR


async def test_agent_error_message_is_shown_to_clients(supervisor: Supervisor) -> None:
    handle = await supervisor.create_run(RunRequest("emitter", {"n": "many"}))
    run = await supervisor.wait_run(handle.run_id)
    assert run.status is RunStatus.ERROR
    assert run.error is not None
    assert run.error.error == "AgentError"
    assert "'n'" in run.error.message


async def test_cancel_after_set_result_keeps_success(
    supervisor: Supervisor, store: SQLiteStore
) -> None:
    started = trio.Event()

    async def settles_early(input: Any, ctx: RunContext) -> Any:
        ctx.set_result({"answer": 42})
        started.set()
        await trio.sleep_forever()

    supervisor.agents.add(Agent("settles_early", settles_early))
    handle = await supervisor.create_run(RunRequest("settles_early"))
    await started.wait()
    await supervisor.cancel_run(handle.run_id, wait=True)
    stored = await _stored(store, handle.run_id)
    assert stored.status is RunStatus.SUCCESS
    assert stored.cancel_reason is None
    assert stored.output == {"answer": 42}
    events = await stored_events(store, handle.run_id)
    assert [e.event for e in events][-2:] == ["values", "end"]


async def test_cancel_running_run_persists_interrupted_user(
    supervisor: Supervisor, store: SQLiteStore
) -> None:
    handle = await supervisor.create_run(RunRequest("emitter", {"n": 1000, "delay": 0.01}))
    events = supervisor.subscribe(handle.run_id)
    seen = 0
    while seen < 3:
        batch = await events.next()
        assert batch is not None
        seen += len(batch)
    run = await supervisor.cancel_run(handle.run_id, wait=True)
    assert run.status is RunStatus.INTERRUPTED
    stored = await _stored(store, handle.run_id)
    assert (stored.status, stored.cancel_reason) == (RunStatus.INTERRUPTED, CancelReason.USER)
    log = await stored_events(store, handle.run_id)
    assert_gapless(log)
    assert all(e.event == "custom" for e in log[1:-1])
    assert log[-1].value()["status"] == "interrupted"


async def test_cancel_before_start_leaves_metadata_and_end_only(
    supervisor: Supervisor, store: SQLiteStore
) -> None:
    handle = await supervisor.create_run(RunRequest("echo", {"x": 1}, after_seconds=3600))
    assert (await _stored(store, handle.run_id)).status is RunStatus.PENDING
    await supervisor.cancel_run(handle.run_id, wait=True)
    stored = await _stored(store, handle.run_id)
    assert (stored.status, stored.cancel_reason) == (RunStatus.INTERRUPTED, CancelReason.USER)
    assert [e.event for e in await stored_events(store, handle.run_id)] == ["metadata", "end"]


async def test_after_seconds_keeps_the_run_pending_until_due(
    autojump_clock: trio.testing.MockClock, supervisor: Supervisor, store: SQLiteStore
) -> None:
    handle = await supervisor.create_run(RunRequest("echo", {"x": 1}, after_seconds=30))
    await trio.sleep(29)
    # In memory: a store read would let the autojump clock leap past the start.
    assert (await supervisor.get_run(handle.run_id)).status is RunStatus.PENDING
    run = await supervisor.wait_run(handle.run_id)
    assert run.status is RunStatus.SUCCESS
    assert trio.current_time() >= 30


async def test_timeout_ends_the_run_with_status_timeout(
    autojump_clock: trio.testing.MockClock, supervisor: Supervisor, store: SQLiteStore
) -> None:
    handle = await supervisor.create_run(RunRequest("sleepy", {"delay": 100}, timeout_seconds=5))
    await supervisor.wait_run(handle.run_id)
    stored = await _stored(store, handle.run_id)
    assert (stored.status, stored.cancel_reason) == (RunStatus.TIMEOUT, CancelReason.TIMEOUT)
    events = await stored_events(store, handle.run_id)
    assert [e.event for e in events] == ["metadata", "error", "end"]
    assert events[1].value()["error"] == "TimeoutError"


async def test_interrupt_waits_for_the_old_runs_cleanup_before_starting(
    supervisor: Supervisor, store: SQLiteStore
) -> None:
    order: list[str] = []
    old_started = trio.Event()

    async def slow_cleanup(input: Any, ctx: RunContext) -> Any:
        old_started.set()
        try:
            await trio.sleep_forever()
        finally:
            with trio.CancelScope(shield=True):
                await trio.sleep(0.3)
                order.append("old cleanup done")

    async def newcomer(input: Any, ctx: RunContext) -> Any:
        old = await store.get_run(input["old"])
        assert old is not None
        order.append(f"new started, old {old.status}")
        return {"ok": True}

    supervisor.agents.add(Agent("slow_cleanup", slow_cleanup))
    supervisor.agents.add(Agent("newcomer", newcomer))
    old = await supervisor.create_run(RunRequest("slow_cleanup"))
    await old_started.wait()
    tid = old.run.thread_id
    new = await supervisor.create_run(
        RunRequest(
            "newcomer",
            {"old": old.run_id},
            thread_id=tid,
            multitask_strategy=MultitaskStrategy.INTERRUPT,
        )
    )
    await supervisor.wait_run(new.run_id)
    assert order == ["old cleanup done", "new started, old interrupted"]
    stored_old = await _stored(store, old.run_id)
    assert stored_old.cancel_reason is CancelReason.INTERRUPT
    assert (await _stored(store, new.run_id)).status is RunStatus.SUCCESS


async def test_rollback_deletes_the_old_run_and_its_events(
    supervisor: Supervisor, store: SQLiteStore
) -> None:
    old = await supervisor.create_run(RunRequest("emitter", {"n": 1000, "delay": 0.01}))
    sub = supervisor.subscribe(old.run_id)
    assert await sub.next()
    new = await supervisor.create_run(
        RunRequest(
            "echo",
            {"v": 2},
            thread_id=old.run.thread_id,
            multitask_strategy=MultitaskStrategy.ROLLBACK,
        )
    )
    await supervisor.wait_run(new.run_id)
    assert await store.get_run(old.run_id) is None
    assert await stored_events(store, old.run_id) == []
    with pytest.raises(NotFound):
        await supervisor.get_run(old.run_id)
    assert (await _stored(store, new.run_id)).status is RunStatus.SUCCESS


async def test_enqueue_runs_in_submission_order(supervisor: Supervisor, store: SQLiteStore) -> None:
    order: list[int] = []

    async def record(input: Any, ctx: RunContext) -> Any:
        order.append(input["i"])
        await trio.sleep(0.01)
        return input

    supervisor.agents.add(Agent("record", record))
    first = await supervisor.create_run(RunRequest("record", {"i": 0}))
    tid = first.run.thread_id
    handles = [first] + [
        await supervisor.create_run(RunRequest("record", {"i": i}, thread_id=tid))
        for i in range(1, 5)
    ]
    for h in handles:
        await supervisor.wait_run(h.run_id)
    assert order == [0, 1, 2, 3, 4]
    runs = await store.list_runs(tid, status=None, limit=10, offset=0)
    assert {r.status for r in runs} == {RunStatus.SUCCESS}


async def test_double_submit_does_not_interleave_two_runs(supervisor: Supervisor) -> None:
    spans: list[tuple[str, str]] = []

    async def span(input: Any, ctx: RunContext) -> Any:
        spans.append((ctx.run_id, "start"))
        for _ in range(5):
            await ctx.emit({"tick": 1})
        spans.append((ctx.run_id, "stop"))
        return None

    supervisor.agents.add(Agent("span", span))
    thread = await supervisor.threads.create()
    handles: list[Any] = []

    async def submit() -> None:
        handles.append(await supervisor.create_run(RunRequest("span", thread_id=thread.thread_id)))

    async with trio.open_nursery() as n:
        n.start_soon(submit)
        n.start_soon(submit)
    for h in handles:
        await supervisor.wait_run(h.run_id)
    a, b = spans[0][0], spans[2][0]
    assert spans == [(a, "start"), (a, "stop"), (b, "start"), (b, "stop")]


async def test_reject_refuses_a_busy_thread(supervisor: Supervisor) -> None:
    first = await supervisor.create_run(RunRequest("sleepy", {"delay": 10}))
    with pytest.raises(Conflict):
        await supervisor.create_run(
            RunRequest(
                "echo", thread_id=first.run.thread_id, multitask_strategy=MultitaskStrategy.REJECT
            )
        )
    await supervisor.cancel_run(first.run_id, wait=True)


async def test_unknown_agent_and_thread_are_not_found(supervisor: Supervisor) -> None:
    with pytest.raises(NotFound):
        await supervisor.create_run(RunRequest("nobody"))
    with pytest.raises(NotFound):
        await supervisor.create_run(RunRequest("echo", thread_id="no-such-thread"))
    handle = await supervisor.create_run(
        RunRequest("echo", thread_id="made-on-demand", if_not_exists="create")
    )
    assert (await supervisor.wait_run(handle.run_id)).thread_id == "made-on-demand"


@pytest.mark.parametrize("agent_name", ["trio_agent", "asyncio_agent"])
async def test_trio_and_asyncio_agents_cancel_cleanly(
    supervisor: Supervisor, store: SQLiteStore, agent_name: str
) -> None:
    import asyncio

    cleaned: list[str] = []
    running = trio.Event()

    async def trio_agent(input: Any, ctx: RunContext) -> Any:
        try:
            await ctx.emit({"step": 1})
            running.set()
            await trio.sleep_forever()
        finally:
            cleaned.append("trio")

    async def asyncio_agent(input: Any, ctx: Any) -> Any:
        try:
            await ctx.emit({"step": 1})
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cleaned.append("asyncio cancelled")
            raise
        finally:
            cleaned.append("asyncio finally")

    supervisor.agents.add(Agent("trio_agent", trio_agent))
    supervisor.agents.add(Agent("asyncio_agent", asyncio_agent, asyncio=True))
    handle = await supervisor.create_run(RunRequest(agent_name))
    sub = supervisor.subscribe(handle.run_id)
    kinds: list[str] = []
    while "custom" not in kinds:
        batch = await sub.next()
        assert batch is not None
        kinds += [e.event for e in batch]
    await supervisor.cancel_run(handle.run_id, wait=True)
    expected = ["trio"] if agent_name == "trio_agent" else ["asyncio cancelled", "asyncio finally"]
    assert cleaned == expected
    stored = await _stored(store, handle.run_id)
    assert (stored.status, stored.cancel_reason) == (RunStatus.INTERRUPTED, CancelReason.USER)
    assert_gapless(await stored_events(store, handle.run_id))


async def test_typewriter_streams_tokens_through_trio_asyncio(supervisor: Supervisor) -> None:
    handle = await supervisor.create_run(RunRequest("typewriter", {"text": "a b c", "rate": 0}))
    events = await collect(supervisor, handle.run_id)
    tokens = [e.value()[0]["content"] for e in events if e.event == "messages"]
    assert "".join(tokens) == "a b c"
    assert (await supervisor.wait_run(handle.run_id)).output == {"text": "a b c"}


async def test_shutdown_cancels_what_the_grace_period_does_not_cover(
    store: SQLiteStore, nursery: trio.Nursery
) -> None:
    sup = await start_supervisor(nursery, store)
    quick = await sup.create_run(RunRequest("sleepy", {"delay": 0.05}))
    slow = await sup.create_run(RunRequest("sleepy", {"delay": 3600}))
    await sup.shutdown(grace=1.0)
    with pytest.raises(ShuttingDown):
        await sup.create_run(RunRequest("echo"))
    assert (await _stored(store, quick.run_id)).status is RunStatus.SUCCESS
    stored = await _stored(store, slow.run_id)
    assert (stored.status, stored.cancel_reason) == (RunStatus.INTERRUPTED, CancelReason.SHUTDOWN)
    assert_gapless(await stored_events(store, slow.run_id))


async def test_cancelling_the_supervisor_still_persists_every_final_state(
    store: SQLiteStore,
) -> None:
    async with trio.open_nursery() as nursery:
        sup = await start_supervisor(nursery, store)
        handles = [await sup.create_run(RunRequest("sleepy", {"delay": 3600})) for _ in range(20)]
        await trio.sleep(0.05)
        nursery.cancel_scope.cancel()
    for h in handles:
        stored = await _stored(store, h.run_id)
        assert (stored.status, stored.cancel_reason) == (
            RunStatus.INTERRUPTED,
            CancelReason.SHUTDOWN,
        )


async def test_restart_closes_running_runs_and_restarts_pending_ones(
    db_path: str, nursery: trio.Nursery
) -> None:
    # A first process: one run mid-way, one waiting its turn; then it "dies".
    store = SQLiteStore(db_path)
    await store.open()
    async with trio.open_nursery() as first:
        sup = await start_supervisor(first, store)
        running = await sup.create_run(RunRequest("emitter", {"n": 100000, "delay": 0.001}))
        queued = await sup.create_run(RunRequest("echo", {"v": 1}, thread_id=running.run.thread_id))
        sub = sup.subscribe(running.run_id)
        seen: list[int] = []
        while len(seen) < 5:
            batch = await sub.next()
            assert batch is not None
            seen += [e.seq for e in batch]
        # Freeze the rows as a kill -9 would leave them: close the store under the runs.
        await freeze(store)
        first.cancel_scope.cancel()

    restarted = SQLiteStore(db_path)
    await restarted.open()
    stale = await restarted.get_run(running.run_id)
    assert stale is not None
    assert stale.status is RunStatus.RUNNING
    sup2 = await start_supervisor(nursery, restarted)
    dead = await restarted.get_run(running.run_id)
    assert dead is not None
    assert (dead.status, dead.cancel_reason) == (RunStatus.INTERRUPTED, CancelReason.RESTART)
    log = await collect(sup2, running.run_id)
    assert_gapless(log)
    assert log[: len(seen)] == (await restarted.read_events(running.run_id, -1, len(seen)))
    again = await sup2.wait_run(queued.run_id)
    assert again.status is RunStatus.SUCCESS
    assert again.output == {"v": 1}
    assert_gapless(await stored_events(restarted, queued.run_id))
    await sup2.shutdown(0)
    await restarted.aclose()


async def test_final_state_durability_writes_the_log_with_the_final_state(
    store: SQLiteStore, nursery: trio.Nursery
) -> None:
    sup = await start_supervisor(nursery, store, settings=Settings(durability="final"))
    handle = await sup.create_run(RunRequest("emitter", {"n": 50}))
    live = await collect(sup, handle.run_id)
    assert_gapless(live)
    await sup.wait_run(handle.run_id)
    assert [e.data for e in await stored_events(store, handle.run_id)] == [e.data for e in live]
    await sup.shutdown(0)


async def test_group_commit_batches_events_of_many_runs(supervisor: Supervisor) -> None:
    handles = [await supervisor.create_run(RunRequest("emitter", {"n": 200})) for _ in range(20)]
    for h in handles:
        assert (await supervisor.wait_run(h.run_id)).status is RunStatus.SUCCESS
    # 20 runs x (metadata + 200 custom + values + end) events, far fewer transactions.
    assert supervisor.writer.transactions < 20 * 203 / 4


async def test_one_run_emitting_back_to_back_shares_transactions(
    supervisor: Supervisor, store: SQLiteStore
) -> None:
    before = supervisor.writer.transactions
    handle = await supervisor.create_run(RunRequest("emitter", {"n": 2000}))
    assert (await supervisor.wait_run(handle.run_id)).status is RunStatus.SUCCESS
    assert_gapless(await stored_events(store, handle.run_id))
    # metadata + 2,000 custom + values + end: a transaction per event was the old cost.
    assert supervisor.writer.transactions - before < 2003 / 10


async def test_a_run_emitting_back_to_back_still_lets_a_cancel_in(
    supervisor: Supervisor, store: SQLiteStore
) -> None:
    handle = await supervisor.create_run(RunRequest("emitter", {"n": 10_000_000}))
    events = supervisor.subscribe(handle.run_id)
    batch = await events.next()
    assert batch
    with trio.fail_after(10):
        run = await supervisor.cancel_run(handle.run_id, wait=True)
    assert (run.status, run.cancel_reason) == (RunStatus.INTERRUPTED, CancelReason.USER)
    log = await stored_events(store, handle.run_id)
    assert_gapless(log)
    assert 1 < len(log) < 10_000_000
    assert log[-1].value()["status"] == "interrupted"


async def test_a_run_without_a_thread_is_stored_with_a_new_thread_of_its_own(
    supervisor: Supervisor, store: SQLiteStore
) -> None:
    handle = await supervisor.create_run(RunRequest("echo", {"x": 1}, owner="alice"))
    thread = await store.get_thread(handle.run.thread_id)
    assert thread is not None
    assert thread.owner == "alice"
    await supervisor.wait_run(handle.run_id, owner="alice")
    thread = await store.get_thread(handle.run.thread_id)
    assert thread is not None
    assert (thread.status, thread.values) == (ThreadStatus.IDLE, {"x": 1})


async def test_runs_created_together_share_their_transactions(
    supervisor: Supervisor, store: SQLiteStore
) -> None:
    feed = supervisor.watch()
    async with trio.open_nursery() as nursery:
        for _ in range(100):
            nursery.start_soon(supervisor.create_run, RunRequest("sleepy", {"delay": 60}))
    running = set()
    with trio.fail_after(10):
        async for run in feed:
            if run.status is RunStatus.RUNNING:
                running.add(run.run_id)
            if len(running) == 100:
                break
    for run_id in running:
        assert (await _stored(store, run_id)).status is RunStatus.RUNNING
    # 100 new rows, 100 metadata events and 100 running marks: 300 transactions unbatched.
    assert supervisor.writer.transactions < 20


class _RunningMarkFails(SQLiteStore):
    """A store that cannot write the mark that a run is running, alone or with its row."""

    async def commit(self, batch: Batch) -> None:
        if batch.running:
            raise StoreError("database write failed: disk I/O error")
        await super().commit(batch)


class _LateRunningMarkFails(SQLiteStore):
    """A store that cannot write a running mark made after the run's row."""

    async def commit(self, batch: Batch) -> None:
        if batch.running and not batch.created:
            raise StoreError("database write failed: disk I/O error")
        await super().commit(batch)


async def test_a_run_that_starts_at_once_commits_its_running_mark_with_its_row(
    db_path: str,
) -> None:
    store = _RunningMarkFails(db_path)
    async with serving(store) as sup:
        with pytest.raises(StoreError):
            await sup.create_run(RunRequest("emitter", {"n": 3}))
        assert await store.list_runs(None, status=None, limit=10, offset=0) == []


async def test_a_run_that_cannot_be_marked_running_fails_before_its_agent_starts(
    db_path: str,
) -> None:
    store = _LateRunningMarkFails(db_path)
    async with serving(store) as sup:
        first = await sup.create_run(RunRequest("emitter", {"n": 3, "delay": 0.02}))
        # Queued behind the first, its running mark is written when its turn comes.
        handle = await sup.create_run(
            RunRequest("emitter", {"n": 3}, thread_id=first.run.thread_id)
        )
        assert (await sup.wait_run(first.run_id)).status is RunStatus.SUCCESS
        run = await sup.wait_run(handle.run_id)
        assert run.status is RunStatus.ERROR
        assert run.error is not None
        # The mark may share its failed transaction with the run's first event.
        assert run.error.error == "StoreError"
        assert run.error.message.endswith("could not be stored")
        assert (await _stored(store, handle.run_id)).status is RunStatus.ERROR
        stored = await stored_events(store, handle.run_id)
        assert_gapless(stored)
        assert "custom" not in [e.event for e in stored]


class _FinalWritesFail(SQLiteStore):
    """A store whose final-state transactions fail, as on a full disk."""

    async def commit(self, batch: Batch) -> None:
        if batch.finals:
            raise StoreError("database write failed: database or disk is full")
        await super().commit(batch)


async def test_a_failed_final_write_ends_the_stream_with_error_details(
    db_path: str,
) -> None:
    store = _FinalWritesFail(db_path)
    async with serving(store) as sup:
        handle = await sup.create_run(RunRequest("emitter", {"n": 3}))
        events = await collect(sup, handle.run_id)
        assert_gapless(events)
        assert events[-1].value() == {
            "run_id": handle.run_id,
            "status": "success",
            "error_details": "the final state could not be persisted",
        }
        # In memory the run is over; the store still says running, for recovery to repair.
        run = await sup.wait_run(handle.run_id)
        assert run.status is RunStatus.SUCCESS
        assert handle.persist_error is not None
        stored = await store.get_run(handle.run_id)
        assert stored is not None
        assert stored.status is RunStatus.RUNNING
        # The supervisor stays healthy for the next run.
        nxt = await sup.create_run(RunRequest("echo", {"ok": 1}))
        assert (await sup.wait_run(nxt.run_id)).output == {"ok": 1}


async def test_finished_runs_leave_memory_after_retention_but_stay_readable(
    autojump_clock: trio.testing.MockClock, store: SQLiteStore, nursery: trio.Nursery
) -> None:
    settings = Settings(cleanup_deadline=math.inf, retention=30)
    sup = await start_supervisor(nursery, store, settings=settings)
    handle = await sup.create_run(RunRequest("echo", {"v": 1}))
    await sup.wait_run(handle.run_id)
    assert sup.get_handle(handle.run_id) is handle
    await trio.sleep(31)
    assert sup.get_handle(handle.run_id) is None
    assert sup.bus.get(handle.run_id) is None
    run = await sup.get_run(handle.run_id)
    assert (run.status, run.output) == (RunStatus.SUCCESS, {"v": 1})
    assert_gapless(await collect(sup, handle.run_id))
    await sup.shutdown(0)


class _EventWriteFailsOnce(SQLiteStore):
    """A store that fails one event batch (an I/O error), then recovers."""

    failed = False

    async def commit(self, batch: Batch) -> None:
        customs = any(e.event == "custom" for e in batch.events)
        if customs and not batch.finals and not self.failed:
            self.failed = True
            raise StoreError("database write failed: disk I/O error")
        await super().commit(batch)


async def test_events_that_could_not_be_stored_fail_the_run_without_a_gap(
    db_path: str,
) -> None:
    store = _EventWriteFailsOnce(db_path)
    async with serving(store) as sup:
        handle = await sup.create_run(RunRequest("emitter", {"n": 500, "delay": 0.001}))
        run = await sup.wait_run(handle.run_id)
        assert store.failed
        assert run.status is RunStatus.ERROR
        assert run.error is not None
        assert run.error.error == "StoreError"
        stored = await stored_events(store, handle.run_id)
        assert_gapless(stored)
        assert stored[-2].event == "error"


async def test_thread_locks_do_not_outlive_their_use(supervisor: Supervisor) -> None:
    for _ in range(5):
        handle = await supervisor.create_run(RunRequest("echo", {"x": 1}))
        await supervisor.wait_run(handle.run_id)
    thread = await supervisor.threads.create()
    await supervisor.threads.delete(thread.thread_id)
    assert isinstance(supervisor.coordinator, LocalCoordinator)
    assert supervisor.coordinator.locks_held == 0


async def test_an_agent_emitting_nan_logs_valid_json(supervisor: Supervisor) -> None:
    async def odd(input: Any, ctx: RunContext) -> Any:
        await ctx.emit({"ratio": float("nan"), "limits": [float("inf"), 2.0]})
        return {"best": float("-inf")}

    supervisor.agents.add(Agent("odd", odd))
    handle = await supervisor.create_run(RunRequest("odd", stream_mode=["custom"]))
    events = await collect(supervisor, handle.run_id)
    assert [json.loads(e.data) for e in events if e.event == "custom"] == [
        {"ratio": None, "limits": [None, 2.0]}
    ]
    assert (await supervisor.wait_run(handle.run_id)).output == {"best": float("-inf")}
    assert json.loads(next(e for e in events if e.event == "values").data) == {"best": None}


async def test_an_event_with_a_lone_surrogate_is_stored_escaped(
    supervisor: Supervisor, store: SQLiteStore
) -> None:
    # Python strings may hold what UTF-8 cannot: such a value is written as a JSON
    # escape, so it reaches the store and the wire instead of failing the run.
    async def odd(input: Any, ctx: RunContext) -> Any:
        await ctx.emit({"text": "half a pair: \ud800"})
        return {"done": True}

    supervisor.agents.add(Agent("odd", odd))
    handle = await supervisor.create_run(RunRequest("odd"))
    run = await supervisor.wait_run(handle.run_id)
    assert run.status is RunStatus.SUCCESS
    custom = [e for e in await stored_events(store, handle.run_id) if e.event == "custom"]
    assert custom[0].value() == {"text": "half a pair: \ud800"}
    assert b"\\ud800" in custom[0].frame
