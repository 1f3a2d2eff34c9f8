"""A replica's engine in this process (a supervisor on a PostgreSQL store of a cluster).

What needs a look at the engine's own state, or a step no HTTP client can
time: the processes' view is in :mod:`tests.test_replicas`.
"""

from __future__ import annotations

import pytest
import trio

from runyard.cluster import settle
from runyard.cluster_events import FOLLOW_CHECK, FOLLOW_POLL, ClusterEventBus
from runyard.config import Settings
from runyard.doorbell import Chime
from runyard.model import Event, RunRequest, RunStatus
from runyard.redis_fanout import RedisFanOut
from runyard.store import Batch
from runyard.store.postgres import PostgresStore

from . import pg, redis
from .helpers import start_supervisor
from .test_cluster import create
from .test_store import events, new_run

pytestmark = pytest.mark.trio

postgres_server = pg.postgres_server
postgres_url = pg.postgres_url
redis_server = redis.redis_server


async def test_a_draining_replica_leaves_runs_nobody_keeps_to_the_others(
    postgres_url: str,
) -> None:
    store = PostgresStore(postgres_url, cluster=True)
    await store.open()
    other = PostgresStore(postgres_url, cluster=True)
    await other.open()
    try:
        async with trio.open_nursery() as nursery:
            sup = await start_supervisor(nursery, store, settings=Settings(cleanup_deadline=5))
            busy = await sup.create_run(RunRequest("sleepy", {"delay": 1.5}))
            nursery.start_soon(sup.shutdown, 10.0)  # draining: the sleepy run finishes
            await trio.sleep(0.2)
            await other.join_cluster(6.0)
            await create(other, new_run("left", "t", 1.0))
            await other.leave_cluster(settle)  # "left" is nobody's, and due
            assert sup.cluster is not None
            sup.cluster.replica.queue.ring()  # the claim loop looks now
            await trio.sleep(0.8)
            left = await store.get_run("left")
            assert left is not None
            assert left.status is RunStatus.PENDING  # not taken by a replica going away
            await sup.wait_idle()
        done = await store.get_run(busy.run_id)
        assert done is not None
        assert done.status is RunStatus.SUCCESS
    finally:
        await other.aclose()
        await store.aclose()


async def test_a_follower_with_the_fan_out_up_takes_an_end_nobody_pushed_at_once(
    postgres_url: str, redis_server: redis.RedisServer
) -> None:
    # A reaper writes a dead replica's `end` to the store and pushes nothing: the run
    # ending rings the queue's doorbell, and the followers look at the store then,
    # rather than after FOLLOW_CHECK of quiet from the fan-out.
    store = PostgresStore(postgres_url)
    await store.open()
    fanout = RedisFanOut(redis_server.url)
    ended = Chime()
    bus = ClusterEventBus(store, ended.next_ring, fanout)
    try:
        await store.commit(Batch(events=events("r", range(3))))
        got: list[Event] = []
        async with trio.open_nursery() as nursery:
            await nursery.start(fanout.serve)
            await nursery.start(bus.keep_alive, 60.0)

            async def follow() -> None:
                async for batch in bus.subscribe("r"):
                    got.extend(batch)

            nursery.start_soon(follow)
            with trio.fail_after(5):
                while len(got) < 3 or not fanout.up:  # noqa: ASYNC110 (no event to wait on)
                    await trio.sleep(0.01)
            await trio.sleep(3 * FOLLOW_POLL)  # the follower now waits on the fan-out
            await store.commit(Batch(events=[Event.make("r", 3, "end", {"status": "x"})]))
            ended.ring()
            with trio.fail_after(FOLLOW_CHECK / 2):
                while len(got) < 4:  # noqa: ASYNC110
                    await trio.sleep(0.01)
            nursery.cancel_scope.cancel()
        assert [e.event for e in got] == ["values", "values", "values", "end"]
        assert bus.followed["fanout"] == 0  # all of it from the store
    finally:
        await store.aclose()
