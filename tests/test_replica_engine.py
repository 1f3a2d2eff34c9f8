"""A replica's engine in this process (a supervisor on a PostgreSQL store of a cluster).

What needs a look at the engine's own state, or a step no HTTP client can
time: the processes' view is in :mod:`tests.test_replicas`.
"""

from __future__ import annotations

import pytest
import trio

from runyard.cluster import settle
from runyard.config import Settings
from runyard.model import RunRequest, RunStatus
from runyard.store.postgres import PostgresStore

from . import pg
from .helpers import start_supervisor
from .test_cluster import create
from .test_store import new_run

pytestmark = pytest.mark.trio

postgres_server = pg.postgres_server
postgres_url = pg.postgres_url


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
