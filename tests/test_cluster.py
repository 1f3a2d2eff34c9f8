"""Replicas sharing one PostgreSQL database: leases, reaping, the fence, the queue, cancels.

Each "replica" is a :class:`PostgresStore` opened with ``cluster=True`` on its
own connections, in this one process, against the throw-away server of
:mod:`tests.pg`. A replica "paused past its lease" is one whose lease the
test ends on the database's clock (:func:`expire`), or one that stops
heart-beating for real where the time it takes matters. Every test asserts
on the rows and events the database holds.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import trio

from runyard.cluster import LeaseLost, Replica, settle
from runyard.errors import StoreError, StoreUnusable
from runyard.events import RunLog
from runyard.model import CancelReason, Run, RunStatus, Thread, now
from runyard.outcome import Outcome, final_state
from runyard.store import SCHEMA_VERSION, Batch, FinalState, pg_queries
from runyard.store.pg_cluster import Bell, Reaped
from runyard.store.pg_schema import CLUSTER_VERSION
from runyard.store.postgres import PostgresStore

from . import pg
from .helpers import assert_gapless
from .test_store import all_events, connected, events, new_run

pytestmark = pytest.mark.trio

postgres_server = pg.postgres_server
postgres_url = pg.postgres_url

# A lease short enough for tests that wait for one to run out.
LEASE = 0.6
# What a test waits at most for something the cluster promises within a heartbeat.
PROMPTLY = 5.0

Join = Callable[..., Awaitable[PostgresStore]]


@pytest.fixture
async def join(postgres_url: str) -> AsyncIterator[Join]:
    """Start a replica: a store of its own, joined with a short lease. ``joined=False``:
    not joined yet (a :class:`Replica` joins it); ``cluster=False``: a store that is
    not a replica (a server of before the cluster)."""
    async with contextlib.AsyncExitStack() as stack:

        async def start(
            *, cluster: bool = True, joined: bool = True, lease: float = LEASE
        ) -> PostgresStore:
            store = PostgresStore(postgres_url, cluster=cluster)
            await store.open()
            stack.push_async_callback(store.aclose)
            if cluster and joined:
                await store.join_cluster(lease)
            return store

        yield start


def rows(url: str, sql: str) -> list[tuple[Any, ...]]:
    with connected(url) as execute:
        return execute(sql)


def run_rows(url: str) -> dict[str, tuple[Any, ...]]:
    """Each run's status, cancel reason, replica and cancel mark, by run id."""
    found = rows(
        url, "SELECT run_id, status, cancel_reason, replica_id, cancel_requested FROM runs"
    )
    return {r[0]: r[1:] for r in found}


def expire(url: str, store: PostgresStore) -> None:
    """End the replica's lease now, on the database's clock: as if it had paused."""
    with connected(url) as execute:
        execute(
            "UPDATE replicas SET lease_until = clock_timestamp() - interval '1 second'"
            f" WHERE replica_id = '{store.replica_id}'"
        )


async def wait_until(check: Callable[[], bool], within: float = PROMPTLY) -> None:
    """Until ``check()`` holds (it reads the database: nothing to wait on but time)."""
    with trio.fail_after(within):
        while not check():  # noqa: ASYNC110
            await trio.sleep(0.02)


async def create(store: PostgresStore, *runs: Run) -> None:
    """Commit new pending runs, each with its thread (created once)."""
    threads = {run.thread_id: Thread(run.thread_id, run.created_at, run.created_at) for run in runs}
    await store.commit(Batch(created=[(run, threads.pop(run.thread_id, None)) for run in runs]))


def succeeded(run: Run, next_seq: int = 0) -> FinalState:
    log = RunLog(run.run_id, next_seq=next_seq)
    return final_state(run, Outcome(RunStatus.SUCCESS, output="done"), log, at=now())


async def claimed(store: PostgresStore, limit: int = 10, **kwargs: Any) -> list[str]:
    return [c.run.run_id for c in await store.claim_runs(now(), limit=limit, **kwargs)]


# -- the schema ----------------------------------------------------------------------


async def test_the_cluster_tables_come_with_the_first_replica_and_a_version_of_their_own(
    postgres_url: str, join: Join
) -> None:
    await join(cluster=False)
    assert rows(postgres_url, "SELECT to_regclass('replicas')") == [(None,)]
    await join()
    meta = dict(rows(postgres_url, "SELECT key, value FROM meta"))
    assert meta["cluster_version"] == str(CLUSTER_VERSION)
    assert meta["schema_version"] == str(SCHEMA_VERSION)  # as SQLite's: the cluster's apart
    await join(cluster=False)  # a store that is not a replica still opens it


async def test_a_cluster_of_version_1_gets_its_fence_as_a_function_and_fences(
    postgres_url: str, join: Join
) -> None:
    await join()
    with connected(postgres_url) as execute:  # as the first version left it
        execute("DROP FUNCTION runyard_fence(text)")
        execute("UPDATE meta SET value = '1' WHERE key = 'cluster_version'")
    store = await join()
    meta = dict(rows(postgres_url, "SELECT key, value FROM meta"))
    assert meta["cluster_version"] == str(CLUSTER_VERSION)
    expire(postgres_url, store)
    await (await join()).reap_replicas(settle)
    with pytest.raises(LeaseLost):
        await create(store, new_run("r", "t", 1.0))
    assert rows(postgres_url, "SELECT count(*) FROM runs") == [(0,)]


@pytest.mark.parametrize(("version", "message"), [("99", "newer runyard"), ("x", "unknown")])
async def test_a_database_clustered_by_a_newer_runyard_is_refused_by_every_store(
    postgres_url: str, join: Join, version: str, message: str
) -> None:
    await join()
    with connected(postgres_url) as execute:
        execute(f"UPDATE meta SET value = '{version}' WHERE key = 'cluster_version'")
    for cluster in (True, False):
        with pytest.raises(StoreUnusable, match=message):
            await PostgresStore(postgres_url, cluster=cluster).open()


async def test_replicas_and_an_exclusive_server_never_share_a_database(
    postgres_url: str, join: Join
) -> None:
    replicas = [await join(), await join()]  # replicas share it
    with pytest.raises(StoreUnusable, match="in use by another runyard process"):
        await PostgresStore(postgres_url, exclusive=True).open()
    for replica in replicas:
        await replica.aclose()
    # Their server sessions end a moment after the connections close, and free the lock.
    locks = (
        "SELECT 1 FROM pg_locks WHERE locktype = 'advisory'"
        " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
    )
    await wait_until(lambda: not rows(postgres_url, locks))
    exclusive = PostgresStore(postgres_url, exclusive=True)
    await exclusive.open()
    try:
        with pytest.raises(StoreUnusable, match="in use by another runyard process"):
            await join()
    finally:
        await exclusive.aclose()


# -- leases ---------------------------------------------------------------------------


async def test_a_replica_joins_with_a_fresh_id_and_a_lease_on_the_database_clock(
    postgres_url: str, join: Join
) -> None:
    a, b = await join(), await join(lease=2.0)
    assert a.replica_id != b.replica_id
    # float8: extract() answers numeric, which pytest 8.0's approx cannot compare.
    lease = (
        "SELECT extract(epoch FROM lease_until - heartbeat_at)::float8"
        " FROM replicas WHERE replica_id"
    )
    assert rows(postgres_url, f"{lease} = '{b.replica_id}'") == [(pytest.approx(2.0),)]
    (before,) = rows(
        postgres_url, f"SELECT lease_until FROM replicas WHERE replica_id = '{b.replica_id}'"
    )
    assert await b.heartbeat() == []
    (after,) = rows(
        postgres_url, f"SELECT lease_until FROM replicas WHERE replica_id = '{b.replica_id}'"
    )
    assert after > before


# -- reaping --------------------------------------------------------------------------


async def test_the_runs_of_dead_replicas_end_interrupted_restart_once_under_concurrent_reapers(
    postgres_url: str, join: Join
) -> None:
    dead = [await join() for _ in range(4)]
    reapers = [await join() for _ in range(3)]
    running: list[str] = []
    for i, store in enumerate(dead):
        first = new_run(f"r{i}", f"t{i}", 1.0)
        behind = new_run(f"r{i}-next", f"t{i}", 1.0)
        alone = new_run(f"r{i}-alone", f"u{i}", 1.0)
        await create(store, first, behind, alone)
        assert await claimed(store, run_ids=[first.run_id, alone.run_id]) == [
            first.run_id,
            alone.run_id,
        ]
        await store.commit(Batch(events=events(first.run_id, range(3))))
        running += [first.run_id, alone.run_id]
        expire(postgres_url, store)

    results: list[Reaped] = []

    async def reap(store: PostgresStore) -> None:
        for _ in range(3):
            results.append(await store.reap_replicas(settle))

    async with trio.open_nursery() as nursery:
        for store in reapers:
            nursery.start_soon(reap, store)

    ended = [run_id for r in results for run_id in r.ended]
    assert sorted(ended) == sorted(running)  # each once, by one reaper
    assert sorted(r for result in results for r in result.replicas) == sorted(
        store.replica_id for store in dead if store.replica_id
    )
    assert sorted(r for result in results for r in result.released) == sorted(
        f"r{i}-next" for i in range(4)
    )
    table = run_rows(postgres_url)
    for i in range(4):
        assert table[f"r{i}"][:2] == ("interrupted", "restart")
        log = await all_events(reapers[0], f"r{i}")
        assert_gapless(log)
        assert [e.event for e in log] == ["values", "values", "values", "end"]
        assert log[-1].value() == {"run_id": f"r{i}", "status": "interrupted"}
        unlogged = await all_events(reapers[0], f"r{i}-alone")
        assert [e.event for e in unlogged] == ["metadata", "end"]  # it had logged nothing
        assert table[f"r{i}-next"] == ("pending", None, None, None)  # anyone's to claim
    assert len(rows(postgres_url, "SELECT * FROM replicas")) == len(reapers)
    # The thread whose next run waits stays busy; the other goes idle.
    threads = dict(rows(postgres_url, "SELECT thread_id, status FROM threads"))
    assert threads["t0"] == "busy"
    assert threads["u0"] == "idle"
    # The runs handed back start elsewhere, first of their threads.
    assert sorted(await claimed(reapers[0])) == sorted(f"r{i}-next" for i in range(4))


async def test_a_replica_that_renews_its_lease_is_never_reaped(
    postgres_url: str, join: Join
) -> None:
    lease = 1.0
    alive, other = await join(lease=lease), await join()
    run = new_run("r", "t", 1.0)
    await create(alive, run)
    await claimed(alive)
    for _ in range(5):  # two leases' worth
        await alive.heartbeat()
        await trio.sleep(lease * 0.4)
        assert await other.reap_replicas(settle) == Reaped()
    assert run_rows(postgres_url)["r"][0] == "running"


async def test_leaving_hands_back_pending_runs_and_refuses_writes_after(
    postgres_url: str, join: Join
) -> None:
    a, b = await join(), await join()
    await create(a, new_run("r", "t", 1.0), new_run("s", "t", 1.0), new_run("c", "t", 1.0))
    await claimed(a, run_ids=["r"])
    assert await b.request_cancel("c", CancelReason.USER, settle)  # a holds it: a mark
    run = await a.get_run("r")
    assert run is not None
    await a.commit(Batch(finals=[succeeded(run)]))
    left = await a.leave_cluster(settle)
    # The one asked to stop ends now, rather than wait for its turn somewhere else.
    assert left == Reaped([a.replica_id or ""], ["c"], ["s"])
    assert run_rows(postgres_url)["c"][:2] == ("interrupted", "user")
    assert await claimed(b) == ["s"]
    with pytest.raises(LeaseLost):
        await a.put_thread(Thread("x", 1.0, 1.0))


# -- the fence ------------------------------------------------------------------------


async def test_a_replica_reaped_while_paused_cannot_commit_and_its_batch_fails_whole(
    postgres_url: str, join: Join
) -> None:
    paused, survivor = await join(), await join()
    run = new_run("r", "t", 1.0)
    await create(paused, run)
    await claimed(paused)
    await paused.commit(Batch(events=events("r", range(2))))
    expire(postgres_url, paused)
    assert (await survivor.reap_replicas(settle)).ended == ["r"]

    # It wakes up and goes on as if nothing happened: a whole batch, refused whole.
    late = Batch(
        created=[(new_run("new", "t2", 2.0), Thread("t2", 2.0, 2.0))],
        events=events("r", range(2, 4)),
        finals=[succeeded(run, next_seq=4)],
    )
    with pytest.raises(LeaseLost, match="lease was lost") as lost:
        await paused.commit(late)
    assert isinstance(lost.value, StoreError)  # the commit writer fails the batch's runs
    assert await paused.get_run("new") is None
    assert await paused.get_thread("t2") is None
    log = await all_events(survivor, "r")
    assert_gapless(log)
    assert [e.event for e in log] == ["values", "values", "end"]  # the reaper's end, at 2
    assert run_rows(postgres_url)["r"][:2] == ("interrupted", "restart")
    # Nor can it renew, claim or write anything else.
    with pytest.raises(LeaseLost):
        await paused.heartbeat()
    with pytest.raises(LeaseLost):
        await paused.claim_runs(now(), limit=1)
    with pytest.raises(LeaseLost):
        await paused.put_thread(Thread("t3", 1.0, 1.0))


async def test_a_write_in_flight_when_the_lease_runs_out_lands_before_the_reaping(
    postgres_url: str, join: Join
) -> None:
    # A long lease: the server must not take its pause inside the transaction for a stall.
    slow, reaper = await join(lease=3.0), await join()
    await create(slow, new_run("r", "t", 1.0))
    await claimed(slow)
    began = trio.Event()

    def write(c: Any) -> None:
        trio.from_thread.run_sync(began.set)
        time.sleep(0.3)  # under the lease's idle bound: the server keeps it
        pg_queries.commit(c, Batch(events=events("r", range(2))))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(slow._write, write)
        await began.wait()
        expire(postgres_url, slow)
        # Its lease ran out, but its transaction holds the row: not reaped yet.
        assert await reaper.reap_replicas(settle) == Reaped()
    assert (await reaper.reap_replicas(settle)).ended == ["r"]
    log = await all_events(reaper, "r")
    assert_gapless(log)
    assert [e.event for e in log] == ["values", "values", "end"]


async def test_a_replica_stalled_inside_a_transaction_is_cut_off_and_reaped(
    postgres_url: str, join: Join
) -> None:
    stalled, reaper = await join(), await join()
    await create(stalled, new_run("r", "t", 1.0))
    await claimed(stalled)
    began = trio.Event()
    failed: list[BaseException] = []

    def write(c: Any) -> None:
        trio.from_thread.run_sync(began.set)
        time.sleep(LEASE * 3)  # paused mid-transaction, holding its lease's row
        pg_queries.commit(c, Batch(events=events("r", range(2))))

    async def stall() -> None:
        try:
            await stalled._write(write)
        except StoreError as exc:
            failed.append(exc)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(stall)
        await began.wait()
        expire(postgres_url, stalled)
        with trio.fail_after(LEASE * 2.5):  # before the stalled write would have gone on
            while not (await reaper.reap_replicas(settle)).ended:  # noqa: ASYNC110
                await trio.sleep(0.05)
    assert failed, "the server ended the stalled session, its write failed"
    log = await all_events(reaper, "r")
    assert [e.event for e in log] == ["metadata", "end"]  # nothing of the stalled batch


# -- the queue ------------------------------------------------------------------------


async def test_concurrent_claimers_take_each_run_once_fifo_per_thread_one_running_per_thread(
    postgres_url: str, join: Join
) -> None:
    admitter = await join(cluster=False)  # its runs are nobody's: anyone claims them
    replicas = [await join() for _ in range(3)]
    threads, per_thread = 4, 6
    order = [new_run(f"t{t}-{n}", f"t{t}", 1.0) for n in range(per_thread) for t in range(threads)]
    await create(admitter, *order)
    total = threads * per_thread
    claims: list[tuple[str, str]] = []  # (run id, replica id), in the order they were claimed
    active: set[str] = set()  # threads with a run that a claimer is running

    async def claimer(store: PostgresStore) -> None:
        while len(claims) < total:
            got = await store.claim_runs(now(), limit=2)
            for claim in got:
                thread = claim.run.thread_id
                assert thread not in active, f"two runs of {thread} running at once"
                active.add(thread)
                claims.append((claim.run.run_id, store.replica_id or ""))
            for claim in got:
                await trio.sleep(0.005)
                active.discard(claim.run.thread_id)  # before the end commits: then another may
                await store.commit(Batch(finals=[succeeded(claim.run)]))
            if not got:
                await trio.sleep(0.005)

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            for store in replicas:
                for _ in range(2):
                    nursery.start_soon(claimer, store)

    ids = [run_id for run_id, _ in claims]
    assert sorted(ids) == sorted(r.run_id for r in order)  # each exactly once
    for t in range(threads):
        assert [i for i in ids if i.startswith(f"t{t}-")] == [
            f"t{t}-{n}" for n in range(per_thread)
        ]
    table = run_rows(postgres_url)
    holders = {replica.replica_id for replica in replicas}
    for run_id, by in claims:
        assert table[run_id][0] == "success"
        assert table[run_id][2] == by in holders  # the replica that ran it is recorded


async def test_a_replica_claims_of_its_own_runs_only_those_whose_task_waits(
    join: Join,
) -> None:
    # A run just written by its admission has no task yet: the claim loop must not
    # start a second one for it. Runs nobody keeps are claimed all the same.
    mine, other = await join(), await join()
    kept, waiting = new_run("kept", "t1", 1.0), new_run("waiting", "t2", 1.0)
    await create(mine, kept, waiting)
    await create(other, new_run("theirs", "t3", 1.0))
    await other.leave_cluster(settle)  # "theirs" is nobody's now
    assert sorted(await claimed(mine, kept=["waiting"])) == ["theirs", "waiting"]
    assert await claimed(mine, kept=[]) == []
    assert await claimed(mine) == ["kept"]  # kept=None: any run of its own


async def test_the_database_refuses_a_second_running_run_on_a_thread_whatever_the_path(
    postgres_url: str, join: Join
) -> None:
    a = await join()
    await create(a, new_run("r", "t", 1.0), new_run("s", "t", 1.0), new_run("x", "u", 1.0))
    assert await claimed(a) == ["r", "x"]
    # A running mark that skips the queue fails its batch whole, other runs' events too.
    with pytest.raises(StoreError):
        await a.commit(Batch(events=events("x", range(2)), running=[("s", 2.0)]))
    assert run_rows(postgres_url)["s"][0] == "pending"
    assert await all_events(a, "x") == []


async def test_a_claim_that_loses_a_race_for_a_thread_claims_nothing_and_fails_nothing(
    postgres_url: str, join: Join
) -> None:
    a = await join(cluster=False)
    b = await join()
    await create(a, new_run("r", "t", 1.0), new_run("s", "t", 1.0))
    with connected(postgres_url) as execute:
        # Another writer marks "s" running past the queue, and has not committed yet.
        execute("BEGIN")
        execute("UPDATE runs SET status = 'running' WHERE run_id = 's'")
        async with trio.open_nursery() as nursery:
            got: list[list[str]] = []

            async def claim() -> None:
                got.append(await claimed(b))

            nursery.start_soon(claim)
            await trio.sleep(0.3)  # the claim of "r" waits on the index entry of "s"
            execute("COMMIT")
    assert got == [[]]
    assert run_rows(postgres_url)["r"][0] == "pending"
    await b.put_thread(Thread("after", 1.0, 1.0))  # its connection is fine


async def test_a_run_waits_for_after_seconds_on_the_database_clock_and_keeps_its_place(
    postgres_url: str, join: Join
) -> None:
    a, b = await join(), await join()
    delayed = new_run("later", "t", 1.0, kwargs={"after_seconds": 0.5})
    await create(a, delayed, new_run("behind", "t", 1.0), new_run("other", "u", 1.0))
    assert await claimed(b) == []  # kept by the replica that admitted them
    assert await claimed(a) == ["other"]  # "behind" waits behind "later", FIFO
    soonest = await a.next_due_in()
    assert soonest is not None
    assert 0.2 < soonest <= 0.5
    await trio.sleep(soonest)
    assert await claimed(a) == ["later"]
    assert await claimed(a) == []  # its thread is busy
    await a.commit(Batch(finals=[succeeded(delayed)]))
    assert await claimed(a) == ["behind"]


# -- cancels --------------------------------------------------------------------------


async def test_a_cancel_marks_the_run_and_rings_the_replica_that_holds_it(
    postgres_url: str, join: Join
) -> None:
    holder, other = await join(), await join()
    await create(holder, new_run("r", "t", 1.0))
    await claimed(holder)
    async with holder.listen() as listener:
        assert await other.request_cancel("r", CancelReason.USER, settle)
        with trio.fail_after(PROMPTLY):
            bells = await listener.receive()
    assert bells == [Bell("cancel", "r", CancelReason.USER)]
    # The first reason stays; the run keeps running until its replica ends it.
    assert await other.request_cancel("r", CancelReason.INTERRUPT, settle)
    assert run_rows(postgres_url)["r"] == ("running", None, holder.replica_id, "user")
    run = await holder.get_run("r")
    assert run is not None
    await holder.commit(Batch(finals=[succeeded(run)]))
    assert not await other.request_cancel("r", CancelReason.USER, settle)


async def test_a_listener_whose_connection_broke_says_it_may_have_missed_bells(
    postgres_url: str, join: Join
) -> None:
    holder, other = await join(), await join()
    await create(holder, new_run("r", "t", 1.0))
    await claimed(holder)
    async with holder.listen() as listener:
        with connected(postgres_url) as execute:
            execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE 'LISTEN%'"
            )
        with trio.fail_after(PROMPTLY):
            assert await listener.receive() == [Bell("missed")]
            assert await other.request_cancel("r", CancelReason.USER, settle)
            assert await listener.receive() == [Bell("cancel", "r", CancelReason.USER)]


async def test_a_heartbeat_lists_the_cancels_of_the_runs_its_replica_holds(
    postgres_url: str, join: Join
) -> None:
    holder, other = await join(), await join()
    await create(holder, new_run("r", "t", 1.0), new_run("s", "u", 1.0), new_run("p", "t", 1.0))
    assert await claimed(holder, run_ids=["r", "s"]) == ["r", "s"]
    # Nobody listens: the doorbells are lost, the marks are not.
    assert await other.request_cancel("s", CancelReason.USER, settle)
    assert await other.request_cancel("p", CancelReason.ROLLBACK, settle)
    assert await holder.heartbeat() == [("s", CancelReason.USER), ("p", CancelReason.ROLLBACK)]
    assert await other.heartbeat() == []


async def test_a_claim_carries_the_cancel_asked_before_the_run_started(join: Join) -> None:
    holder, other = await join(), await join()
    await create(holder, new_run("r", "t", 1.0))
    assert await other.request_cancel("r", CancelReason.DISCONNECT, settle)
    (claim,) = await holder.claim_runs(now(), limit=1)
    assert claim.cancel is CancelReason.DISCONNECT


async def test_cancelling_a_pending_run_nobody_holds_ends_it_at_once(
    postgres_url: str, join: Join
) -> None:
    admitter, replica = await join(cluster=False), await join()
    await create(admitter, new_run("r", "t", 1.0))
    assert await replica.request_cancel("r", CancelReason.USER, settle)
    assert run_rows(postgres_url)["r"][:2] == ("interrupted", "user")
    log = await all_events(replica, "r")
    assert_gapless(log)
    assert [e.event for e in log] == ["metadata", "end"]
    assert await claimed(replica) == []


# -- the replica's service --------------------------------------------------------------


Delivered = list[tuple[str, CancelReason, bool]]  # each call of on_cancel, and its answer


@contextlib.asynccontextmanager
async def serving(
    store: PostgresStore,
    *,
    heartbeat: float,
    lease: float = LEASE,
    refuse: set[str] | None = None,
) -> AsyncIterator[tuple[Replica, Delivered, list[BaseException]]]:
    """A :class:`Replica` served in the background: it, the cancels handed to it (it
    refuses the first of each run in ``refuse``), and the error it stopped with."""
    delivered: Delivered = []
    stopped: list[BaseException] = []
    refusing = set(refuse or ())

    def on_cancel(run_id: str, reason: CancelReason) -> bool:
        took = run_id not in refusing
        refusing.discard(run_id)
        delivered.append((run_id, reason, took))
        return took

    replica = Replica(store, on_cancel, heartbeat=heartbeat, lease=lease)

    async def serve(task_status: trio.TaskStatus[str]) -> None:
        try:
            await replica.serve(task_status=task_status)
        except LeaseLost as exc:
            stopped.append(exc)

    async with trio.open_nursery() as nursery:
        await nursery.start(serve)
        yield replica, delivered, stopped
        nursery.cancel_scope.cancel()


async def test_a_serving_replica_keeps_its_lease_and_reaps_a_dead_one_within_a_heartbeat(
    postgres_url: str, join: Join
) -> None:
    dead, store = await join(), await join(joined=False)
    await create(dead, new_run("r", "t", 1.0))
    await claimed(dead)
    heartbeat = LEASE / 3
    async with serving(store, heartbeat=heartbeat) as (replica, _, stopped):
        started = time.monotonic()
        await wait_until(lambda: run_rows(postgres_url)["r"][0] == "interrupted")
        assert time.monotonic() - started < LEASE + 2 * heartbeat + 0.5
        await trio.sleep(2 * LEASE)  # and it stays alive itself
        assert rows(postgres_url, "SELECT replica_id FROM replicas") == [(replica.replica_id,)]
        assert not stopped
    # Cancelled: it left, and writes no more.
    assert rows(postgres_url, "SELECT replica_id FROM replicas") == []
    with pytest.raises(LeaseLost):
        await store.put_thread(Thread("x", 1.0, 1.0))


async def test_a_serving_replica_that_was_reaped_stops_with_lease_lost(
    postgres_url: str, join: Join
) -> None:
    store, reaper = await join(joined=False), await join(lease=60.0)
    async with serving(store, heartbeat=0.1) as (replica, _, stopped):
        # Paused past its lease and reaped meanwhile, as a stopped process would be
        # (its heartbeats may renew the lease first: then again).
        with trio.fail_after(PROMPTLY):
            while replica.replica_id not in (await reaper.reap_replicas(settle)).replicas:
                expire(postgres_url, store)
        await wait_until(lambda: bool(stopped))
    assert isinstance(stopped[0], LeaseLost)


async def test_cancels_reach_the_replica_by_doorbell_or_by_the_next_heartbeat_once_each(
    postgres_url: str, join: Join
) -> None:
    store, other = await join(joined=False), await join()
    heartbeat = 1.0
    # "lost" is refused once, as a run whose task is not registered yet would be.
    async with serving(store, heartbeat=heartbeat, refuse={"lost"}) as (replica, delivered, _):
        await create(store, new_run("rung", "t", 1.0), new_run("lost", "u", 1.0))
        assert len(await replica.claim(limit=2)) == 2
        assert await other.request_cancel("rung", CancelReason.USER, settle)
        await wait_until(lambda: bool(delivered), within=heartbeat * 0.8)  # not a heartbeat
        with connected(postgres_url) as execute:  # a mark whose doorbell got lost
            execute("UPDATE runs SET cancel_requested = 'interrupt' WHERE run_id = 'lost'")
        await wait_until(lambda: len(delivered) == 3, within=2 * heartbeat + PROMPTLY)
        await trio.sleep(2.2 * heartbeat)  # more heartbeats list both again
    assert delivered == [
        ("rung", CancelReason.USER, True),
        ("lost", CancelReason.INTERRUPT, False),  # the next heartbeat hands it again
        ("lost", CancelReason.INTERRUPT, True),
    ]


async def test_a_run_that_ends_on_one_replica_rings_the_queue_of_the_others(join: Join) -> None:
    store, other = await join(joined=False), await join()
    async with serving(store, heartbeat=1.0) as (replica, _, _):
        await create(other, new_run("r", "t", 1.0))
        (claim,) = await other.claim_runs(now(), limit=1)
        with trio.fail_after(PROMPTLY):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(replica.queue.nap, 60.0)
                await other.commit(Batch(finals=[succeeded(claim.run)]))


async def test_replicas_cut_off_together_past_their_leases_do_not_reap_each_other(
    postgres_server: pg.PostgresServer, postgres_url: str, join: Join
) -> None:
    # PostgreSQL away longer than a lease: every lease ran out on the database's clock.
    # Back, the first replica to renew must not reap the others before they renew too.
    stores = [await join(joined=False) for _ in range(3)]
    heartbeat = LEASE / 3
    async with contextlib.AsyncExitStack() as stack:
        serving_replicas = [
            await stack.enter_async_context(serving(store, heartbeat=heartbeat)) for store in stores
        ]
        await trio.to_thread.run_sync(postgres_server.pause)
        await trio.sleep(2 * LEASE)
        await trio.to_thread.run_sync(postgres_server.resume)
        await trio.sleep(4 * LEASE)
        assert all(not stopped for _, _, stopped in serving_replicas)
        assert len(rows(postgres_url, "SELECT replica_id FROM replicas")) == 3
