"""Fan-out: replay plus live with no gap or duplicate, and slow subscribers."""

from __future__ import annotations

import random

import pytest
import trio
import trio.testing

from runyard.events import SUBSCRIBER_BUFFER, TAIL_EVENTS, LocalEventBus
from runyard.model import Event, RunRequest, RunStatus
from runyard.store import SQLiteStore
from runyard.supervisor import Supervisor

from .helpers import assert_gapless, collect

pytestmark = pytest.mark.trio


async def test_a_subscriber_that_stops_reading_does_not_slow_a_10k_event_run(
    supervisor: Supervisor,
) -> None:
    handle = await supervisor.create_run(RunRequest("emitter", {"n": 10_000}, after_seconds=0.05))
    stalled = supervisor.subscribe(handle.run_id)
    first = await stalled.next()  # attached; from now on it reads nothing
    assert first is not None
    reader = supervisor.subscribe(handle.run_id)
    got = []
    async for batch in reader:
        got.extend(batch)
    # The run finished while the stalled subscriber held a full channel.
    assert (await supervisor.wait_run(handle.run_id)).status is RunStatus.SUCCESS
    assert_gapless(got)
    assert len(got) == 10_003
    # It was dropped from live fan-out, not waited for; it catches up from the log.
    log = supervisor.bus.get(handle.run_id)
    assert log is not None
    assert log.subscriber_count == 0
    rest = list(first)
    async for batch in stalled:
        rest.extend(batch)
    assert [e.seq for e in rest] == [e.seq for e in got]


async def test_subscribers_joining_at_random_offsets_see_the_rest_in_order(
    supervisor: Supervisor,
) -> None:
    n = TAIL_EVENTS + 2 * SUBSCRIBER_BUFFER
    handle = await supervisor.create_run(RunRequest("emitter", {"n": n, "delay": 0.0001}))
    rng = random.Random(7)
    results: dict[int, list[int]] = {}

    async def join(offset: int) -> None:
        await trio.sleep(rng.random() * 0.2)
        results[offset] = [e.seq for e in await collect(supervisor, handle.run_id, offset)]

    offsets = [-1, 0, 5, *(rng.randrange(n) for _ in range(40)), n + 1]
    async with trio.open_nursery() as nursery:
        for offset in offsets:
            nursery.start_soon(join, offset)
    last = n + 2  # metadata + n custom + values + end - 1
    for offset, seqs in results.items():
        assert seqs == list(range(offset + 1, last + 1)), offset


async def test_a_finished_run_replays_from_the_store(supervisor: Supervisor) -> None:
    handle = await supervisor.create_run(RunRequest("emitter", {"n": 30}))
    await supervisor.wait_run(handle.run_id)
    supervisor.bus.forget(handle.run_id)
    events = await collect(supervisor, handle.run_id, 9)
    assert [e.seq for e in events] == list(range(10, 33))
    assert events[-1].event == "end"


async def test_batches_waiting_for_a_subscriber_reach_it_as_one(store: SQLiteStore) -> None:
    # Final-state durability publishes event by event; a reader that wakes up
    # once should write them all at once, the end included.
    bus = LocalEventBus(store)
    log = bus.open("r1")
    sub = bus.subscribe("r1")
    got: list[list[Event]] = []

    async def read() -> None:
        while (batch := await sub.next()) is not None:
            got.append(batch)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(read)
        await trio.testing.wait_all_tasks_blocked()
        for i in range(4):
            log.publish([Event.make("r1", log.take_seq(), "custom", {"i": i})])
        log.publish([Event.make("r1", log.take_seq(), "end", {"run_id": "r1"})])
    assert [[e.seq for e in batch] for batch in got] == [[0, 1, 2, 3, 4]]
    assert sub.done
