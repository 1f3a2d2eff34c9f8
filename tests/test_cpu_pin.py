"""While graphs are served the process keeps to one CPU, and gets its CPUs back after."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
import trio

from runyard.config import Settings, load
from runyard.cpu_pin import REHOME_MARGIN, CpuPin, choose
from runyard.graph_loop import GraphLoop
from runyard.server import Server, serve

pytestmark = pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="Linux only")

PROJECT = Path(__file__).with_name("lg_project")
ALLOWED = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set()


def affinities() -> list[set[int]]:
    """The CPUs each thread of this process may run on."""
    found = []
    for tid in os.listdir("/proc/self/task"):
        try:
            found.append(os.sched_getaffinity(int(tid)))
        except ProcessLookupError:  # the thread ended meanwhile
            continue
    return found


async def test_every_thread_keeps_to_one_cpu_while_the_loop_serves_then_gets_them_back() -> None:
    pin = CpuPin()
    assert pin.allowed == ALLOWED
    loop = GraphLoop(pin)

    async def graph_side() -> set[int]:
        await asyncio.sleep(0)
        return os.sched_getaffinity(0)

    async with trio.open_nursery() as nursery:
        await nursery.start(loop.serve)
        if pin.possible:
            cpu = pin.cpu
            assert cpu in ALLOWED, "pinned before the loop reports started"
            assert all(cpus == {cpu} for cpus in affinities()), affinities()
            assert await loop.run(graph_side) == {cpu}, "the graph thread is there too"
        else:  # one CPU allowed: nothing to choose
            assert await loop.run(graph_side) == ALLOWED
            assert pin.cpu is None
        nursery.cancel_scope.cancel()
    assert pin.cpu is None
    assert all(cpus == ALLOWED for cpus in affinities()), affinities()


async def test_without_a_pin_the_loop_leaves_the_cpus_alone(nursery: trio.Nursery) -> None:
    loop = GraphLoop()
    await nursery.start(loop.serve)

    async def graph_side() -> set[int]:
        return os.sched_getaffinity(0)

    assert await loop.run(graph_side) == ALLOWED
    assert all(cpus == ALLOWED for cpus in affinities())


def test_the_threads_move_only_to_a_cpu_idler_by_the_margin() -> None:
    seconds = 10.0
    step = REHOME_MARGIN * seconds
    assert choose(0, {0: 0.0, 1: 0.0}, seconds) == 0, "a tie stays"
    assert choose(1, {0: 0.0, 1: 0.0}, seconds) == 1
    assert choose(0, {0: step * 0.9, 1: 0.0}, seconds) == 0, "within the margin: stays"
    assert choose(0, {0: step * 1.5, 1: 0.0, 2: step}, seconds) == 1, "the idlest"
    assert choose(0, {0: 1.0, 1: 9.0}, seconds) == 0


async def test_a_server_with_graphs_pins_by_default(settings: Settings) -> None:
    assert settings.pin_cpu
    settings.langgraph_json = str(PROJECT / "langgraph.json")
    settings.grace = 0.2
    async with trio.open_nursery() as nursery:
        server: Server = await nursery.start(serve, settings)
        if len(ALLOWED) > 1:
            [cpu] = os.sched_getaffinity(0)
            assert all(cpus == {cpu} for cpus in affinities())
        server.request_stop()
        await server.stopped.wait()
    assert all(cpus == ALLOWED for cpus in affinities()), "given back at shutdown"


async def test_pin_cpu_false_leaves_the_cpus_alone(settings: Settings) -> None:
    settings.pin_cpu = load(env={"RUNYARD_PIN_CPU": "false"}).pin_cpu
    assert not settings.pin_cpu
    settings.langgraph_json = str(PROJECT / "langgraph.json")
    settings.grace = 0.2
    async with trio.open_nursery() as nursery:
        server: Server = await nursery.start(serve, settings)
        await trio.sleep(0.2)
        assert all(cpus == ALLOWED for cpus in affinities())
        server.request_stop()
        await server.stopped.wait()
