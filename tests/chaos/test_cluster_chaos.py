"""A cancellation at every step of a replica's parts on PostgreSQL; the invariants after each.

The targets: the commit writer of a replica (its writes fenced by its lease),
the claim loop that starts the runs whose turn came, and the reaper that
ends a dead replica's runs and hands back its pending ones. Each trial has a
database of its own on the session's throw-away PostgreSQL (:mod:`tests.pg`);
after the injection a later replica settles whatever is left, and every run
then has one terminal row and a complete log that agrees with it, as in
:mod:`.test_cancellation`.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import trio

from runyard.config import Settings
from runyard.model import CancelReason, Event, MultitaskStrategy, RunRequest
from runyard.store import Batch
from runyard.store.postgres import PostgresStore
from runyard.supervisor import Supervisor

from .. import pg
from ..helpers import start_supervisor
from ..test_cluster import create, expire
from ..test_store import events, new_run
from .harness import Trial, explore
from .test_cancellation import SEEDS, _agents, _check_run, writer_trial

postgres_server = pg.postgres_server

# A dead replica's lease in these trials (seconds): long enough to commit its runs.
DEAD_LEASE = 0.5
COUNTS: dict[str, int] = {}


@contextlib.asynccontextmanager
async def _replica(
    url: str, trial: Trial, *, cleanup_deadline: float = 1.0
) -> AsyncIterator[tuple[Supervisor, trio.Nursery]]:
    """A supervisor serving as one replica of the cluster on ``url``, until shut down."""
    store = PostgresStore(url, cluster=True)
    await store.open()
    settings = Settings(cleanup_deadline=cleanup_deadline)
    try:
        async with trio.open_nursery() as nursery:
            sup = await start_supervisor(nursery, store, _agents(trial), settings)
            yield sup, nursery
            await sup.shutdown(grace=0)
    finally:
        await store.aclose()


async def _settled(url: str, trial: Trial, run_ids: list[str], observed: Any = None) -> None:
    """A later replica sees every run to its end; then the invariants hold."""
    async with _replica(url, trial) as (sup, _):
        for run_id in run_ids:
            await sup.wait_run(run_id)
        for run_id in run_ids:
            await _check_run(sup.store, run_id, (observed or {}).get(run_id, []))


def _on_a_database(
    server: pg.PostgresServer, scenario: Callable[[str, Trial], Awaitable[None]]
) -> Callable[[Trial], Awaitable[None]]:
    async def trial_on_fresh_database(trial: Trial) -> None:
        url = await trio.to_thread.run_sync(server.new_database)
        try:
            await scenario(url, trial)
        finally:
            await trio.to_thread.run_sync(server.drop_database, url)

    return trial_on_fresh_database


async def _writer_scenario(url: str, trial: Trial) -> None:
    handles, observed = await writer_trial(trial, _replica(url, trial, cleanup_deadline=0.3))
    # Leaving, the replica ended what its dead writer left; or a later one does.
    await _settled(url, trial, [h.run_id for h in handles], observed)


async def _claims_scenario(url: str, trial: Trial) -> None:
    """Runs waiting in a thread's line start through the claim loop; the process
    stops at every step of it (its runs end or go back to the queue)."""
    run_ids: list[str] = []
    with trio.CancelScope() as process:  # the process: stopped at the injection
        async with _replica(url, trial) as (sup, _):
            thread = await sup.threads.create()
            first = await sup.create_run(RunRequest("looping", thread_id=thread.thread_id))
            for _ in range(2):
                behind = RunRequest(
                    "steps_trio",
                    thread_id=thread.thread_id,
                    multitask_strategy=MultitaskStrategy.ENQUEUE,
                )
                run_ids.append((await sup.create_run(behind)).run_id)
            run_ids.insert(0, first.run_id)
            trial.is_target = lambda task: task.name == "claims"
            trial.inject = process.cancel
            await sup.cancel_run(first.run_id, reason=CancelReason.USER)
            for run_id in run_ids:
                await sup.wait_run(run_id)
    await _settled(url, trial, run_ids)


async def _reaper_scenario(url: str, trial: Trial) -> None:
    """A dead replica held a running run (with events) and a pending one; a replica
    reaps it, and leaves at every step of that reaping."""
    dead = PostgresStore(url, cluster=True)
    await dead.open()
    try:
        await dead.join_cluster(DEAD_LEASE)
        running, waiting = new_run("held", "t", 1.0), new_run("next", "t", 1.0)
        await create(dead, running, waiting)
        await dead.claim_runs(running.created_at, limit=1)
        logged = [Event.make("held", 0, "metadata", {"run_id": "held"})]
        await dead.commit(Batch(events=logged + events(running.run_id, range(1, 3))))
        await trio.to_thread.run_sync(expire, url, dead)
    finally:
        await dead.aclose()
    async with _replica(url, trial) as (sup, _):
        trial.is_target = lambda task: "_reap_expired" in task.name
        assert sup.cluster_scope is not None
        trial.inject = sup.cluster_scope.cancel
        with trio.move_on_after(3.0):  # the replica that left waits for nothing
            for run_id in ("held", "next"):
                await sup.wait_run(run_id)
    await _settled(url, trial, ["held", "next"])
    async with _replica(url, trial) as (sup, _):
        reaped = await sup.store.get_run("held")
        assert reaped is not None
        assert (reaped.status, reaped.cancel_reason) == ("interrupted", "restart")


TARGETS = {
    "pg-commit-writer": _writer_scenario,
    "claim-loop": _claims_scenario,
    "reaper": _reaper_scenario,
}


@pytest.mark.parametrize("target", list(TARGETS))
def test_a_cancellation_at_every_step_of_a_replica_keeps_the_invariants(
    target: str, postgres_server: pg.PostgresServer
) -> None:
    injections = explore(_on_a_database(postgres_server, TARGETS[target]), target, SEEDS)
    COUNTS[target] = injections
    print(f"\nchaos: {target}: {injections} injection points (seeds {SEEDS})")
    assert injections > 0, "the target was reached and cancelled"
