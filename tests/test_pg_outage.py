"""PostgreSQL going away under a running server: within ``store_outage_grace`` its
runs wait and lose nothing while new runs are refused; past it they fail with
``error_details`` and the next start repairs their rows.

Each test has a PostgreSQL server of its own (tests/pg.py), which it shuts down
and starts again under the server.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import trio

from runyard.config import Settings
from runyard.errors import StoreUnavailable
from runyard.model import Event, RunRequest, RunStatus
from runyard.store.postgres import PostgresStore
from runyard.supervisor import Supervisor

from . import pg
from .helpers import assert_gapless, collect, start_supervisor, stored_events

pytestmark = pytest.mark.trio

# A bound on each wait below; the waits themselves end on what they watch for.
HANG = 30.0


@pytest.fixture
def own_postgres() -> Iterator[pg.PostgresServer]:
    reason = pg.unavailable()
    if reason is not None:
        pg.missing(reason)
    binaries = pg.bin_dir()
    assert binaries is not None
    server = pg.PostgresServer(binaries)
    try:
        server.start()
        yield server
    finally:
        server.stop()


async def _holding(sup: Supervisor) -> None:
    """Until the commit writer holds a batch for the database to come back."""
    with trio.fail_after(HANG):
        while not sup.writer.holding:  # noqa: ASYNC110 (a property, no event to wait on)
            await trio.sleep(0.02)


async def _first_events(sup: Supervisor, run_id: str, count: int) -> None:
    with trio.fail_after(HANG):
        async for batch in sup.subscribe(run_id):
            count -= len(batch)
            if count <= 0:
                return


async def test_runs_wait_out_a_postgresql_restart_and_lose_nothing(
    own_postgres: pg.PostgresServer,
) -> None:
    store = PostgresStore(own_postgres.new_database(), exclusive=True)
    await store.open()
    async with trio.open_nursery() as nursery:
        sup = await start_supervisor(
            nursery, store, settings=Settings(cleanup_deadline=5.0, store_outage_grace=HANG)
        )
        handle = await sup.create_run(RunRequest("emitter", {"n": 100, "delay": 0.02}))
        live: list[Event] = []
        gathered = trio.Event()
        nursery.start_soon(_gather, sup, handle.run_id, live, gathered)
        await _first_events(sup, handle.run_id, 5)

        await trio.to_thread.run_sync(own_postgres.pause)
        await _holding(sup)
        with pytest.raises(StoreUnavailable):
            await sup.create_run(RunRequest("echo", {"x": 1}))
        await trio.sleep(1.0)  # the run keeps emitting into memory
        await trio.to_thread.run_sync(own_postgres.resume)

        with trio.fail_after(HANG):
            run = await sup.wait_run(handle.run_id)
        assert run.status is RunStatus.SUCCESS
        assert not sup.writer.holding
        stored = await stored_events(store, handle.run_id)
        assert_gapless(stored)
        assert [e.value()["i"] for e in stored if e.event == "custom"] == list(range(100))
        row = await store.get_run(handle.run_id)
        assert row is not None
        assert row.status is RunStatus.SUCCESS
        with trio.fail_after(HANG):
            await gathered.wait()
        assert [(e.seq, e.data) for e in live] == [(e.seq, e.data) for e in stored]
        # Runs are taken again once the database answers.
        echo = await sup.create_run(RunRequest("echo", {"x": 2}))
        assert (await sup.wait_run(echo.run_id)).status is RunStatus.SUCCESS
        await sup.shutdown(0)
    await store.aclose()


async def _gather(sup: Supervisor, run_id: str, into: list[Event], done: trio.Event) -> None:
    into.extend(await collect(sup, run_id))
    done.set()


async def test_runs_outlasted_by_an_outage_fail_with_error_details_and_are_repaired(
    own_postgres: pg.PostgresServer,
) -> None:
    url = own_postgres.new_database()
    store = PostgresStore(url, exclusive=True)
    await store.open()
    async with trio.open_nursery() as nursery:
        sup = await start_supervisor(
            nursery, store, settings=Settings(cleanup_deadline=5.0, store_outage_grace=1.0)
        )
        handle = await sup.create_run(RunRequest("emitter", {"n": 10_000, "delay": 0.01}))
        await _first_events(sup, handle.run_id, 3)
        await trio.to_thread.run_sync(own_postgres.pause)
        with trio.fail_after(HANG):
            events = await collect(sup, handle.run_id)
        end = events[-1]
        assert end.event == "end"
        assert end.value()["error_details"] == "the final state could not be persisted"
        assert (await sup.wait_run(handle.run_id)).status is RunStatus.ERROR
        await trio.to_thread.run_sync(own_postgres.resume)
        await sup.shutdown(0)
    await store.aclose()

    # The next start finds the run's row unfinished and ends it, its log too.
    again = PostgresStore(url, exclusive=True)
    await again.open()
    async with trio.open_nursery() as nursery:
        sup = await start_supervisor(nursery, again)
        stored = await again.get_run(handle.run_id)
        assert stored is not None
        assert stored.status.terminal
        assert_gapless(await stored_events(again, handle.run_id))
        await sup.shutdown(0)
    await again.aclose()
