"""A cancellation at every scheduling step of each target; invariants after each.

Invariants (shared/RELIABILITY.md): exactly one terminal row per run; the log
is gapless, starts with ``metadata`` and ends with one ``end`` whose status is
the row's; ``success`` is kept once the result was set; every subscriber got
``end`` or can resume from its last id with no gap; nothing published that
was not committed; no unhandled exception (the trial would raise); nothing
left queued for the database when it closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import pytest
import trio

from runyard.agents import Agent, AgentRegistry, RunContext
from runyard.config import Settings
from runyard.graph_loop import TASK_PREFIX
from runyard.http.sse import frames
from runyard.model import CancelReason, Event, MultitaskStrategy, RunRequest, RunStatus
from runyard.store import SQLiteStore, Store
from runyard.supervisor import RunHandle, Supervisor

from ..helpers import assert_gapless, parse_frames, start_supervisor
from .harness import CLEANUP_DEADLINE, Trial, explore

HEAVY = os.environ.get("RUNYARD_CHAOS_TIER") == "heavy"
COUNTER = str(Path(__file__).parent.parent / "lg_counter" / "langgraph.json")
SEEDS = list(range(5)) if HEAVY else [0]
EMITS = 8 if HEAVY else 3
COUNTS: dict[str, int] = {}


def _agents(trial: Trial) -> AgentRegistry:
    """Agents that record how far they got in ``trial.notes``."""

    async def steps_trio(input: Any, ctx: RunContext) -> Any:
        for k in range(EMITS):
            await ctx.emit({"k": k})
            await trio.sleep(0.001)
            if k == 1:
                ctx.set_result({"r": 1})
                trial.notes["result_set"] = True
        return {"r": 1}

    async def steps_asyncio(input: Any, ctx: Any) -> Any:
        try:
            for k in range(EMITS):
                await ctx.emit({"k": k})
                await asyncio.sleep(0)
                if k == 1:
                    ctx.set_result({"r": 1})
                    trial.notes["result_set"] = True
            return {"r": 1}
        finally:
            trial.notes["asyncio_finally"] = True

    async def looping(input: Any, ctx: RunContext) -> Any:
        for k in range(1000):
            await ctx.emit({"k": k})
            await trio.sleep(0.005)
        return None

    async def newcomer(input: Any, ctx: RunContext) -> Any:
        trial.notes["newcomer_saw"] = input["old_status"]()
        return {"new": True}

    return AgentRegistry(
        [
            Agent("steps_trio", steps_trio),
            Agent("steps_asyncio", steps_asyncio, asyncio=True),
            Agent("looping", looping),
            Agent("newcomer", newcomer),
        ]
    )


@contextlib.asynccontextmanager
async def _system(
    trial: Trial, *, cleanup_deadline: float = CLEANUP_DEADLINE, graphs: bool = False
) -> AsyncIterator[tuple[Supervisor, trio.Nursery]]:
    store = SQLiteStore(trial.db_path)
    await store.open()
    settings = Settings(cleanup_deadline=cleanup_deadline)
    agents = _agents(trial)
    if graphs:
        for graph in Settings(langgraph_json=COUNTER, demo_agents=False).registry().all():
            agents.add(graph)
    try:
        async with trio.open_nursery() as nursery:
            sup = await start_supervisor(nursery, store, agents, settings)
            yield sup, nursery
            await sup.shutdown(grace=0)
    finally:
        await store.aclose()
    assert store.closed


@contextlib.asynccontextmanager
async def _reopened(trial: Trial) -> AsyncIterator[SQLiteStore]:
    """The database as a later process finds it on disk."""
    store = SQLiteStore(trial.db_path)
    await store.open()
    try:
        yield store
    finally:
        await store.aclose()


async def _check_run(store: Store, run_id: str, observed: list[Event] = ()) -> Any:  # type: ignore[assignment]
    """One terminal row, a complete log that agrees with it, observed ⊆ stored."""
    run = await store.get_run(run_id)
    assert run is not None, "the run has a row"
    assert run.status.terminal, f"the row is terminal, not {run.status}"
    log = await store.read_events(run_id, -1, 100_000)
    assert_gapless(log)
    assert log[0].event == "metadata"
    assert log[-1].value()["status"] == str(run.status)
    stored = {e.seq: e.data for e in log}
    for e in observed:
        assert stored.get(e.seq) == e.data, f"event {e.seq} was published but not committed"
    return run


async def _follow(sup: Supervisor, run_id: str, into: list[Event]) -> None:
    async for batch in sup.subscribe(run_id):
        into.extend(batch)


def _customs(log: list[Event]) -> list[int]:
    return [e.value()["k"] for e in log if e.event == "custom"]


# -- targets ------------------------------------------------------------------


def _run_task_scenario(agent_name: str) -> Any:
    async def scenario(trial: Trial) -> None:
        async with _system(trial) as (sup, nursery):
            handle = await sup.create_run(RunRequest(agent_name))
            trial.is_target = lambda task: task.name == f"run {handle.run_id}"

            def inject() -> None:
                trial.notes["result_at_fire"] = trial.notes.get("result_set", False)
                handle.cancel(CancelReason.USER)

            trial.inject = inject
            observed: list[Event] = []
            nursery.start_soon(_follow, sup, handle.run_id, observed)
            await sup.wait_run(handle.run_id)
            await sup.wait_idle()
        async with _reopened(trial) as disk:
            run = await _check_run(disk, handle.run_id, observed)
            log = await disk.read_events(handle.run_id, -1, 1000)
        assert observed, "the subscriber got events"
        assert observed[-1].event == "end", "the subscriber got end"
        ks = _customs(log)
        assert ks == list(range(len(ks))), "the log holds a prefix of the emits"
        if not trial.fired or trial.notes.get("result_at_fire"):
            assert run.status is RunStatus.SUCCESS
        if run.status is RunStatus.SUCCESS:
            assert run.output == {"r": 1}
        else:
            assert (run.status, run.cancel_reason) == (RunStatus.INTERRUPTED, CancelReason.USER)
        if agent_name == "steps_asyncio" and trial.notes.get("result_set") is not None:
            assert trial.notes.get("asyncio_finally"), "the asyncio agent's finally ran"

    return scenario


async def _sse_scenario(trial: Trial) -> None:
    async with _system(trial) as (sup, nursery):
        handle = await sup.create_run(RunRequest("steps_trio"))
        received: list[bytes] = []
        scope = trio.CancelScope()

        async def sse_handler() -> None:
            with scope:
                body = frames(
                    sup,
                    handle.run_id,
                    sup.subscribe(handle.run_id),
                    modes=None,
                    cancel_on_disconnect=True,
                    heartbeat=15,
                )
                async with contextlib.aclosing(body) as chunks:
                    async for chunk in chunks:
                        received.append(chunk)

        trial.is_target = lambda task: task.name == "sse"
        trial.inject = scope.cancel
        nursery.start_soon(sse_handler, name="sse")
        await sup.wait_run(handle.run_id)
        await sup.wait_idle()
    async with _reopened(trial) as disk:
        run = await _check_run(disk, handle.run_id)
        rest = await disk.read_events(handle.run_id, -1, 1000)
    got = parse_frames(b"".join(received).decode())[0]
    ids = [f.id for f in got if f.id is not None]
    assert ids == list(range(len(ids))), "what reached the client is gapless"
    if not got or got[-1].event != "end":
        # The client left early: the run was cancelled for it, or had finished.
        assert run.status is RunStatus.SUCCESS or run.cancel_reason is CancelReason.DISCONNECT
        rest = [e for e in rest if e.seq > (ids[-1] if ids else -1)]
        assert [e.seq for e in rest] == list(range(len(ids), len(ids) + len(rest)))
        assert rest[-1].event == "end", "it can resume to the end"


async def _wait_scenario(trial: Trial) -> None:
    async with _system(trial) as (sup, nursery):
        handle = await sup.create_run(RunRequest("steps_trio"))
        scope = trio.CancelScope()
        answered: list[Any] = []

        async def wait_handler() -> None:
            with scope:
                run = await sup.wait_run(handle.run_id, cancel_on_exit=CancelReason.DISCONNECT)
                answered.append(run)

        trial.is_target = lambda task: task.name == "wait"
        trial.inject = scope.cancel
        nursery.start_soon(wait_handler, name="wait")
        await sup.wait_run(handle.run_id)
        await sup.wait_idle()
    async with _reopened(trial) as disk:
        run = await _check_run(disk, handle.run_id)
    if answered:
        assert answered[0].status is run.status, "the waiter saw the persisted status"
    else:
        assert run.status is RunStatus.SUCCESS or run.cancel_reason is CancelReason.DISCONNECT


async def _interrupt_scenario(trial: Trial) -> None:
    async with _system(trial) as (sup, _):
        old = await sup.create_run(RunRequest("looping"))
        seen = sup.subscribe(old.run_id)
        while seen.last_seq < 2:  # it is running and has emitted
            await seen.next()
        seen.close()
        scope = trio.CancelScope()
        created: list[str] = []

        def old_status() -> str:
            return str(old.run.status)  # what the store holds once finished: see below

        async def interrupter() -> None:
            with scope:
                new = await sup.create_run(
                    RunRequest(
                        "newcomer",
                        {"old_status": old_status},
                        thread_id=old.run.thread_id,
                        multitask_strategy=MultitaskStrategy.INTERRUPT,
                    )
                )
                created.append(new.run_id)

        trial.is_target = lambda task: task.name == "interrupter"
        trial.inject = scope.cancel
        async with trio.open_nursery() as inner:
            inner.start_soon(interrupter, name="interrupter")
        if not created:
            old.cancel(CancelReason.USER)  # the interrupter never got through
        for run_id in [old.run_id, *created]:
            await sup.wait_run(run_id)
        await sup.wait_idle()
    async with _reopened(trial) as disk:
        old_run = await _check_run(disk, old.run_id)
        for run_id in created:
            new_run = await _check_run(disk, run_id)
            assert new_run.status is RunStatus.SUCCESS
            assert old_run.cancel_reason is CancelReason.INTERRUPT
            # The new run started only once the old one was over (and persisted: its
            # status is set in memory after the commit).
            assert trial.notes["newcomer_saw"] == "interrupted"
        rows = await disk.list_runs(old.run.thread_id, status=None, limit=10, offset=0)
    assert {r.run_id for r in rows} == {old.run_id, *created}, "no half-made run"


async def _shutdown_scenario(trial: Trial) -> None:
    async with _system(trial) as (sup, nursery):
        handles = [
            await sup.create_run(RunRequest("steps_trio")),
            await sup.create_run(RunRequest("looping")),
            await sup.create_run(RunRequest("steps_trio", after_seconds=60)),
        ]
        scope = trio.CancelScope()

        async def shutdown() -> None:
            with scope:
                await sup.shutdown(grace=0.002)

        trial.is_target = lambda task: task.name == "shutdown"
        trial.inject = scope.cancel
        async with trio.open_nursery() as inner:
            inner.start_soon(shutdown, name="shutdown")
        # Whether or not the drain was cut short, the process now ends: the
        # supervisor's own cancellation must still persist every run.
        nursery.cancel_scope.cancel()
    async with _reopened(trial) as disk:
        for h in handles:
            await _check_run(disk, h.run_id)


async def _writer_scenario(trial: Trial) -> None:
    handles, observed = await writer_trial(trial, _system(trial, cleanup_deadline=0.3))
    # A restart settles whatever the dead writer left; then every invariant holds.
    async with _system(trial) as (sup2, _):
        for h in handles:
            await sup2.wait_run(h.run_id)
        for h in handles:
            await _check_run(sup2.store, h.run_id, observed[h.run_id])


async def writer_trial(
    trial: Trial, system: AbstractAsyncContextManager[tuple[Supervisor, trio.Nursery]]
) -> tuple[list[RunHandle], dict[str, list[Event]]]:
    """Two runs, the commit writer cancelled at the trial's step: their handles, and
    what their followers observed."""
    observed: dict[str, list[Event]] = {}
    async with system as (sup, _):
        handles = [await sup.create_run(RunRequest("steps_trio")) for _ in range(2)]
        trial.is_target = lambda task: task.name == "commit writer"
        assert sup.writer_scope is not None
        trial.inject = sup.writer_scope.cancel
        async with trio.open_nursery() as followers:
            for h in handles:
                observed[h.run_id] = []
                followers.start_soon(_follow, sup, h.run_id, observed[h.run_id])
            for h in handles:
                await sup.wait_run(h.run_id)
            await trio.sleep(0.05)
            followers.cancel_scope.cancel()  # streams of runs whose end never came
        await sup.wait_idle()
        if not trial.fired:
            assert not sup.writer._queue, "nothing left queued when the database closes"
    return handles, observed


async def _checkpoint_scenario(trial: Trial) -> None:
    """A cancel at every step of a graph run's trio side (the graph loop's bridge,
    which logs the gate's events and queues its checkpoints, and its calls into trio:
    the saver's reads, the wait for the commit): the state never runs ahead of the
    logged events."""
    observed: list[Event] = []
    async with _system(trial, graphs=True) as (sup, nursery):
        thread = await sup.threads.create()
        handle = await sup.create_run(
            RunRequest(
                "counter",
                {"target": 4, "pause": 0.001},
                thread_id=thread.thread_id,
                stream_mode=["values", "custom"],
            )
        )
        trial.is_target = lambda task: task.name.startswith(TASK_PREFIX)
        trial.inject = lambda: handle.cancel(CancelReason.USER)
        nursery.start_soon(_follow, sup, handle.run_id, observed)
        await sup.wait_run(handle.run_id)
        await sup.wait_idle()
    async with _reopened(trial) as disk:
        await _check_run(disk, handle.run_id, observed)
        log = await disk.read_events(handle.run_id, -1, 1000)
        rows = await disk.list_checkpoints(thread.thread_id, "")
        state = await disk.get_thread(thread.thread_id)
    counts = {e.value().get("count") for e in log if e.event == "values"}
    steps = [r.metadata["step"] for r in rows if r.metadata["step"] >= 1]
    assert set(steps) <= counts, "every checkpoint committed with its step's values"
    assert state is not None
    if state.values and state.values.get("count"):  # a success wrote the saved state
        assert state.values["count"] == max(steps)


# -- the tests ------------------------------------------------------------------

TARGETS = {
    "run-trio": _run_task_scenario("steps_trio"),
    "run-asyncio": _run_task_scenario("steps_asyncio"),
    "sse-handler": _sse_scenario,
    "wait-handler": _wait_scenario,
    "multitask-interrupt": _interrupt_scenario,
    "shutdown": _shutdown_scenario,
    "commit-writer": _writer_scenario,
    "checkpoint-write": _checkpoint_scenario,
}


@pytest.mark.parametrize("target", list(TARGETS))
def test_a_cancellation_at_every_step_keeps_the_invariants(target: str) -> None:
    injections = explore(TARGETS[target], target, SEEDS)
    COUNTS[target] = injections
    print(f"\nchaos: {target}: {injections} injection points (seeds {SEEDS})")
    assert injections > 0, "the target was reached and cancelled"


def test_print_chaos_coverage() -> None:
    total = sum(COUNTS.values())
    lines = [f"  {name}: {n}" for name, n in COUNTS.items()]
    print("\nchaos coverage:\n" + "\n".join(lines) + f"\n  total: {total} injection points")
