"""Generated scenarios: Hypothesis interleaves starts, cancels, disconnects,
resumes, graceful restarts and crashes, and checks the invariants after every
step against what the store holds.

The supervisor lives in a trio loop on a thread of its own (a :class:`Host`);
each rule calls into it with ``trio.from_thread.run``.
"""

from __future__ import annotations

import collections
import os
import tempfile
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import trio
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
)

from runyard.agents import Agent, AgentRegistry, RunContext
from runyard.errors import Conflict
from runyard.model import CancelReason, MultitaskStrategy, RunRequest, RunStatus
from runyard.store import SQLiteStore

from ..helpers import assert_gapless, freeze, start_supervisor

T = TypeVar("T")
RULES_RUN: collections.Counter[str] = collections.Counter()
HEAVY = os.environ.get("RUNYARD_CHAOS_TIER") == "heavy"


async def _steps(input: Any, ctx: RunContext) -> Any:
    for k in range(3):
        await ctx.emit({"k": k})
        await trio.sleep(0.002)
        if k == 1:
            ctx.set_result({"r": 1})
    return {"r": 1}


async def _long(input: Any, ctx: RunContext) -> Any:
    for k in range(300):
        await ctx.emit({"k": k})
        await trio.sleep(0.01)
    return {"r": 2}


async def _fail(input: Any, ctx: RunContext) -> Any:
    await ctx.emit({"k": 0})
    raise RuntimeError("generated failure")


AGENTS = AgentRegistry([Agent("steps", _steps), Agent("long", _long), Agent("fail", _fail)])


class Host:
    """A store and a supervisor in their own trio loop, on their own thread."""

    def __init__(self, db_path: str) -> None:
        self.db_path = db_path
        self.ready = threading.Event()
        self.failure: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        self.ready.wait(30)
        if self.failure is not None:
            raise self.failure

    def _run(self) -> None:
        try:
            trio.run(self._main)
        except BaseException as exc:
            self.failure = exc
            self.ready.set()

    async def _main(self) -> None:
        self.token = trio.lowlevel.current_trio_token()
        self.stop = trio.Event()
        self.crash = False
        self.store = SQLiteStore(self.db_path)
        await self.store.open()
        async with trio.open_nursery() as nursery:
            self.sup = await start_supervisor(nursery, self.store, AGENTS)
            self.ready.set()
            await self.stop.wait()
            if self.crash:
                # As kill -9 leaves it: the rows stop changing, nothing is finalized.
                await freeze(self.store)
                nursery.cancel_scope.cancel()
            else:
                await self.sup.shutdown(grace=0)
        if not self.crash:
            await self.store.aclose()

    def call(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        return trio.from_thread.run(fn, *args, trio_token=self.token)

    def close(self, *, crash: bool = False) -> None:
        def stop() -> None:
            self.crash = crash
            self.stop.set()

        trio.from_thread.run_sync(stop, trio_token=self.token)
        self.thread.join(60)
        assert not self.thread.is_alive(), "the host stopped"
        if self.failure is not None:
            raise self.failure


class RunyardMachine(RuleBasedStateMachine):
    runs = Bundle("runs")

    def __init__(self) -> None:
        super().__init__()
        self.tmp = tempfile.TemporaryDirectory()
        self.db_path = str(Path(self.tmp.name) / "generated.sqlite3")
        self.host = Host(self.db_path)
        self.threads = [self.host.call(self.host.sup.threads.create).thread_id for _ in range(2)]
        self.known: list[str] = []

    def teardown(self) -> None:
        try:
            self.host.close()
        finally:
            self.tmp.cleanup()

    @rule(
        target=runs,
        thread=st.integers(0, 1),
        agent=st.sampled_from(["steps", "long", "fail"]),
        strategy=st.sampled_from(list(MultitaskStrategy)),
    )
    def start(self, thread: int, agent: str, strategy: MultitaskStrategy) -> str:
        RULES_RUN["start"] += 1
        request = RunRequest(agent, thread_id=self.threads[thread], multitask_strategy=strategy)
        try:
            handle = self.host.call(self.host.sup.create_run, request)
        except Conflict:
            assert strategy is MultitaskStrategy.REJECT
            return ""
        self.known.append(handle.run_id)
        return handle.run_id

    @rule(run_id=runs)
    def cancel(self, run_id: str) -> None:
        RULES_RUN["cancel"] += 1
        if not run_id:
            return

        async def cancel() -> Any:
            try:
                return await self.host.sup.cancel_run(run_id, wait=True)
            except Exception as exc:  # a rolled-back run is gone: NotFound
                return exc

        result = self.host.call(cancel)
        if not isinstance(result, Exception):
            assert result.status.terminal

    @rule(run_id=runs)
    def disconnect(self, run_id: str) -> None:
        """A /wait client with on_disconnect=cancel that leaves at once."""
        RULES_RUN["disconnect"] += 1
        if not run_id:
            return

        async def leave() -> None:
            with trio.move_on_after(0.001):
                try:
                    await self.host.sup.wait_run(run_id, cancel_on_exit=CancelReason.DISCONNECT)
                except Exception:  # gone already (rollback)
                    return

        self.host.call(leave)

    @rule(run_id=runs, offset=st.integers(-1, 40))
    def resume(self, run_id: str, offset: int) -> None:
        """Join from an offset: the rest of the log, in order, to its end."""
        RULES_RUN["resume"] += 1
        if not run_id:
            return

        async def resume() -> None:
            sup = self.host.sup
            handle = sup.get_handle(run_id)
            if handle is not None and not handle.finished.is_set():
                return  # still running: covered by the invariant once it ends
            got = []
            with trio.fail_after(10):
                async for batch in sup.subscribe(run_id, offset):
                    got.extend(batch)
            stored = await self.host.store.read_events(run_id, offset, 100_000)
            assert [(e.seq, e.data) for e in got] == [(e.seq, e.data) for e in stored]

        self.host.call(resume)

    @rule()
    def graceful_restart(self) -> None:
        RULES_RUN["graceful_restart"] += 1
        self.host.close()
        self.host = Host(self.db_path)
        self._all_terminal_after_restart()

    @precondition(lambda self: len(self.known) > 0)
    @rule()
    def crash_restart(self) -> None:
        RULES_RUN["crash_restart"] += 1
        self.host.close(crash=True)
        self.host = Host(self.db_path)
        self._all_terminal_after_restart(crashed=True)

    def _all_terminal_after_restart(self, crashed: bool = False) -> None:
        async def check() -> None:
            for run_id in self.known:
                run = await self.host.store.get_run(run_id)
                if run is None:
                    continue  # rolled back
                handle = self.host.sup.get_handle(run_id)
                if handle is not None and not handle.finished.is_set():
                    continue  # it never began before the crash: this process runs it now
                if not run.status.terminal:
                    raise AssertionError(f"{run_id} left {run.status} after a restart")
                if crashed and run.cancel_reason is CancelReason.RESTART:
                    assert run.status is RunStatus.INTERRUPTED

        self.host.call(check)

    @invariant()
    def finished_runs_have_one_terminal_row_and_a_complete_log(self) -> None:
        async def check() -> None:
            sup = self.host.sup
            for run_id in self.known:
                handle = sup.get_handle(run_id)
                if handle is not None and not handle.finished.is_set():
                    continue
                run = await self.host.store.get_run(run_id)
                if run is None or not run.status.terminal:
                    # Rolled back, or pending in the store until its restart starts it.
                    continue
                log = await self.host.store.read_events(run_id, -1, 100_000)
                assert_gapless(log)
                assert log[-1].value()["status"] == str(run.status)

        self.host.call(check)

    @invariant()
    def a_thread_runs_one_run_at_a_time(self) -> None:
        def count() -> None:
            sup = self.host.sup
            running: dict[str, int] = {}
            for run_id in self.known:
                handle = sup.get_handle(run_id)
                if handle is not None and handle.run.status is RunStatus.RUNNING:
                    running[handle.run.thread_id] = running.get(handle.run.thread_id, 0) + 1
            assert all(n == 1 for n in running.values()), running

        trio.from_thread.run_sync(count, trio_token=self.host.token)


RunyardMachine.TestCase.settings = settings(
    max_examples=100 if HEAVY else 30,
    stateful_step_count=20 if HEAVY else 12,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_generated_scenarios_keep_the_invariants = RunyardMachine.TestCase


def test_print_generated_coverage() -> None:
    print(f"\ngenerated scenarios: steps by rule: {dict(RULES_RUN)}")
