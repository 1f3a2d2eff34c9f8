"""The graph loop: a plain asyncio loop in a thread, and its three doors to trio."""

from __future__ import annotations

import asyncio
import sys
import threading

import pytest
import trio

from runyard.errors import ShuttingDown
from runyard.graph_loop import GIL_SWITCH_INTERVAL, GraphLoop


async def test_run_answers_after_everything_the_coroutine_posted(nursery: trio.Nursery) -> None:
    loop = GraphLoop()
    await nursery.start(loop.serve)
    applied: list[int] = []
    threads: set[str] = set()

    def apply(i: int) -> None:
        threads.add(threading.current_thread().name)
        applied.append(i)

    async def work() -> str:
        assert threading.current_thread().name == "runyard-graphs"
        for i in range(1000):
            loop.post(apply, i)
            if i % 100 == 0:
                await asyncio.sleep(0)
        return "done"

    async def fail() -> None:
        loop.post(apply, -1)
        raise ValueError("the graph failed")

    assert await loop.run(work) == "done"
    assert applied == list(range(1000)), "every post, in order, before the answer"
    assert threads == {threading.current_thread().name}, "posts run on trio's thread"
    with pytest.raises(ValueError, match="the graph failed"):
        await loop.run(fail)
    assert applied[-1] == -1, "a failed coroutine's posts come before its error too"


async def test_to_trio_runs_behind_earlier_posts_and_answers(nursery: trio.Nursery) -> None:
    loop = GraphLoop()
    await nursery.start(loop.serve)
    seen: list[str] = []

    async def on_trio(word: str) -> str:
        await trio.lowlevel.checkpoint()
        return f"{word}, after {seen}"

    async def refused() -> None:
        raise LookupError("no such thing")

    async def work() -> tuple[str, str]:
        loop.post(seen.append, "posted")
        answer = await loop.to_trio(on_trio, "answered")
        try:
            await loop.to_trio(refused)
        except LookupError as exc:
            return answer, str(exc)
        return answer, "no error"

    assert await loop.run(work) == ("answered, after ['posted']", "no such thing")


async def test_a_trio_cancel_cancels_the_coroutine_and_waits_for_its_cleanup(
    nursery: trio.Nursery,
) -> None:
    loop = GraphLoop()
    await nursery.start(loop.serve)
    started = trio.Event()
    cleaned: list[str] = []

    async def slow() -> None:
        loop.post(started.set)
        try:
            await asyncio.sleep(600)
        finally:
            await asyncio.sleep(0.01)  # a cleanup that itself awaits
            cleaned.append("cleaned up")

    async def call() -> None:
        await loop.run(slow)

    with trio.move_on_after(10) as timeout:
        async with trio.open_nursery() as inner:
            inner.start_soon(call)
            await started.wait()
            inner.cancel_scope.cancel()
    assert not timeout.cancelled_caught
    assert cleaned == ["cleaned up"], "the finally block ran before run() gave up"


async def test_run_after_the_loop_stopped_is_shutting_down() -> None:
    loop = GraphLoop()
    async with trio.open_nursery() as nursery:
        await nursery.start(loop.serve)
        slept: str = await loop.run(asyncio.sleep, 0, "slept")
        assert slept == "slept"
        nursery.cancel_scope.cancel()
    with pytest.raises(ShuttingDown):
        await loop.run(asyncio.sleep, 0)


async def test_a_read_started_ahead_on_trio_is_awaited_on_the_loop(nursery: trio.Nursery) -> None:
    loop = GraphLoop()
    await nursery.start(loop.serve)
    began: list[str] = []

    async def read(key: str) -> str:
        began.append(threading.current_thread().name)
        await trio.sleep(0.01)
        return f"row {key}"

    future = loop.ahead(read, "a")
    assert began == []  # started, not yet run: trio runs it at its next checkpoint

    async def graph() -> str:
        return await future

    assert await loop.run(graph) == "row a"
    assert began == [threading.main_thread().name]  # the read ran on trio


async def test_the_gil_changes_hands_often_while_graphs_run() -> None:
    loop = GraphLoop()
    before = sys.getswitchinterval()
    async with trio.open_nursery() as nursery:
        await nursery.start(loop.serve)
        assert sys.getswitchinterval() == pytest.approx(min(before, GIL_SWITCH_INTERVAL), rel=0.01)
        nursery.cancel_scope.cancel()
    assert sys.getswitchinterval() == before
