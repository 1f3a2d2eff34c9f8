"""Replicas across real processes: several ``runyard serve`` on one PostgreSQL database.

Each test starts real servers (:mod:`tests.process`) on the throw-away
PostgreSQL of :mod:`tests.pg` and speaks HTTP to them as clients behind a
load balancer would: a run created through one replica is streamed, resumed,
waited for and cancelled through another; a replica is killed with SIGKILL
or stopped with SIGTERM while the others serve. Every test asserts on the
frames clients got and the rows the database holds.
"""

from __future__ import annotations

import contextlib
import itertools
import re
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from . import pg, redis
from .helpers import Frame, parse_frames
from .process import ServerProcess, free_port
from .test_store import connected

pytestmark = pytest.mark.trio

postgres_server = pg.postgres_server
postgres_url = pg.postgres_url
redis_server = redis.redis_server

ENV = {"RUNYARD_GRACE": "1.5", "RUNYARD_CLEANUP_DEADLINE": "2"}
# The takeover the cluster promises after a replica dies (seconds).
TAKEOVER = 10.0


class Cluster:
    """Replicas of one database, started on demand and all stopped at the end."""

    def __init__(self, url: str, tmp: Path) -> None:
        self.url = url
        self.tmp = tmp
        self.servers: list[ServerProcess] = []

    async def start(self, count: int = 1, **env: str) -> list[ServerProcess]:
        started = [
            ServerProcess(self.url, free_port(), self.tmp, **ENV, **env) for _ in range(count)
        ]
        self.servers += started
        for server in started:
            server.start()
        for server in started:
            await server.wait_ready()
        return started

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        with connected(self.url) as execute:
            return execute(sql)

    def run_row(self, run_id: str) -> tuple[str, str | None]:
        ((status, reason),) = self.rows(
            f"SELECT status, cancel_reason FROM runs WHERE run_id = '{run_id}'"
        )
        return status, reason

    def events(self, run_id: str) -> list[tuple[int, str]]:
        return [
            (seq, event)
            for seq, event in self.rows(
                f"SELECT seq, event FROM events WHERE run_id = '{run_id}' ORDER BY seq"
            )
        ]


@pytest.fixture
def cluster(postgres_url: str, tmp_path: Path) -> Iterator[Cluster]:
    replicas = Cluster(postgres_url, tmp_path)
    yield replicas
    for server in replicas.servers:
        server.ensure_stopped()


@contextlib.asynccontextmanager
async def clients(
    *servers: ServerProcess, headers: dict[str, str] | None = None
) -> AsyncIterator[list[httpx.AsyncClient]]:
    """A client of each server, as a load balancer's clients would reach them."""
    async with contextlib.AsyncExitStack() as stack:
        yield [
            await stack.enter_async_context(
                httpx.AsyncClient(base_url=server.url, timeout=60, headers=headers)
            )
            for server in servers
        ]


async def create(c: httpx.AsyncClient, thread: str, agent: str, **fields: Any) -> str:
    body = {"assistant_id": agent, **fields}
    response = await c.post(f"/threads/{thread}/runs", json=body)
    assert response.status_code == 200, response.text
    run_id: str = response.json()["run_id"]
    return run_id


async def new_thread(c: httpx.AsyncClient) -> str:
    thread_id: str = (await c.post("/threads", json={})).json()["thread_id"]
    return thread_id


async def stream(
    c: httpx.AsyncClient, thread: str, run_id: str, after: int | None = None
) -> list[Frame]:
    headers = {} if after is None else {"Last-Event-ID": str(after)}
    async with c.stream("GET", f"/threads/{thread}/runs/{run_id}/stream", headers=headers) as r:
        assert r.status_code == 200
        text = "".join([chunk async for chunk in r.aiter_text()])
    return parse_frames(text)[0]


async def post(c: httpx.AsyncClient, path: str, body: Any, codes: list[int]) -> None:
    codes.append((await c.post(path, json=body)).status_code)


def ids(frames: list[Frame]) -> list[int]:
    return [f.id for f in frames if f.id is not None]


def ends(frames: list[Frame]) -> str:
    """The status the stream's last frame, its one ``end``, gives."""
    assert [f.event for f in frames].count("end") == 1
    assert frames[-1].event == "end"
    status: str = frames[-1].data["status"]
    return status


async def test_a_run_created_on_one_replica_streams_resumes_and_waits_through_another(
    cluster: Cluster,
) -> None:
    a, b = await cluster.start(2)
    async with clients(a, b) as (ca, cb):
        thread = await new_thread(ca)
        run_id = await create(ca, thread, "emitter", input={"n": 40, "delay": 0.02})
        whole = await stream(cb, thread, run_id)
        resumed = await stream(cb, thread, run_id, after=10)
        waited = await cb.get(f"/threads/{thread}/runs/{run_id}/join")
        listed = (await cb.get(f"/threads/{thread}/runs/{run_id}")).json()

    assert ends(whole) == "success"
    assert ids(whole) == list(range(len(ids(whole))))  # gapless, from 0
    assert ids(resumed) == ids(whole)[11:]
    assert [f.data for f in resumed] == [f.data for f in whole][11:]
    assert waited.status_code == 200
    assert waited.json() == {"done": 40}
    assert listed["status"] == "success"
    stored = cluster.events(run_id)
    assert [seq for seq, _ in stored] == ids(whole)
    assert [event for _, event in stored].count("end") == 1


async def test_a_cancel_through_another_replica_ends_the_run_within_two_seconds_once(
    cluster: Cluster,
) -> None:
    a, b = await cluster.start(2)
    async with clients(a, b) as (ca, cb):
        thread = await new_thread(ca)
        run_id = await create(ca, thread, "sleepy", input={"delay": 600})
        await trio.sleep(0.3)
        began = time.monotonic()
        cancelled = await cb.post(f"/threads/{thread}/runs/{run_id}/cancel?wait=1")
        took = time.monotonic() - began
        frames = await stream(cb, thread, run_id)

    assert cancelled.status_code in (200, 202, 204), cancelled.text
    assert took < 2.0
    assert cluster.run_row(run_id) == ("interrupted", "user")
    assert ends(frames) == "interrupted"
    assert [event for _, event in cluster.events(run_id)].count("end") == 1


async def test_reject_answers_409_exactly_once_for_creates_on_two_replicas_at_once(
    cluster: Cluster,
) -> None:
    a, b = await cluster.start(2)
    async with clients(a, b) as (ca, cb):
        for _ in range(8):
            thread = await new_thread(ca)
            body = {"assistant_id": "sleepy", "input": {"delay": 0.3}}
            body["multitask_strategy"] = "reject"
            codes: list[int] = []
            async with trio.open_nursery() as nursery:
                for c in (ca, cb):
                    nursery.start_soon(post, c, f"/threads/{thread}/runs", body, codes)
            assert sorted(codes) == [200, 409]
            (count,) = cluster.rows(f"SELECT count(*) FROM runs WHERE thread_id = '{thread}'")[0]
            assert count == 1


async def test_enqueued_runs_on_two_replicas_run_one_at_a_time_in_order(
    cluster: Cluster,
) -> None:
    a, b = await cluster.start(2)
    async with clients(a, b) as (ca, cb):
        thread = await new_thread(ca)
        made = []
        for i in range(6):
            c = (ca, cb)[i % 2]
            made.append(
                await create(
                    c, thread, "sleepy", input={"delay": 0.2}, multitask_strategy="enqueue"
                )
            )
        await cb.get(f"/threads/{thread}/runs/{made[-1]}/join")
        rows = cluster.rows(
            "SELECT run_id, status, created_at, updated_at FROM runs"
            f" WHERE thread_id = '{thread}' ORDER BY queue_seq"
        )
    assert [r[0] for r in rows] == made
    assert all(r[1] == "success" for r in rows)
    # One at a time: each ended at least its 0.2 s of sleep after the one before it.
    finished = [r[3] for r in rows]
    assert all(b - a >= 0.2 for a, b in itertools.pairwise(finished))


async def test_interrupt_on_another_replica_waits_for_the_old_runs_final_state(
    cluster: Cluster,
) -> None:
    a, b = await cluster.start(2)
    async with clients(a, b) as (ca, cb):
        thread = await new_thread(ca)
        old = await create(ca, thread, "sleepy", input={"delay": 600})
        await trio.sleep(0.3)
        new = await create(cb, thread, "echo", input={"x": 1}, multitask_strategy="interrupt")
        done = await cb.get(f"/threads/{thread}/runs/{new}/join")
    assert done.json() == {"x": 1}
    assert cluster.run_row(old) == ("interrupted", "interrupt")
    assert cluster.run_row(new) == ("success", None)


async def test_a_replica_killed_hands_over_within_ten_seconds(cluster: Cluster) -> None:
    # A runs a long run and keeps a second one waiting behind it; a client follows the
    # first through B. After kill -9 of A: the first ends interrupted/restart with its
    # `end` (the client sees it), the second runs to success on B.
    a, b = await cluster.start(2)
    frames: list[Frame] = []
    async with clients(a, b) as (ca, cb):
        thread = await new_thread(ca)
        first = await create(ca, thread, "emitter", input={"n": 100000, "delay": 0.05})
        second = await create(
            ca, thread, "echo", input={"after": "kill"}, multitask_strategy="enqueue"
        )

        async def follow() -> None:
            frames.extend(await stream(cb, thread, first))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(follow)
            await trio.sleep(1.0)
            killed = time.monotonic()
            a.signal(signal.SIGKILL)
            done = await cb.get(f"/threads/{thread}/runs/{second}/join")
            took = time.monotonic() - killed
    assert took < TAKEOVER
    assert done.json() == {"after": "kill"}
    assert cluster.run_row(first) == ("interrupted", "restart")
    assert ends(frames) == "interrupted"
    assert ids(frames) == list(range(len(ids(frames))))
    assert [event for _, event in cluster.events(first)].count("end") == 1


async def test_sigterm_drains_one_replica_while_the_others_serve(cluster: Cluster) -> None:
    a, b = await cluster.start(2)
    async with clients(a, b) as (ca, cb):
        on_a = await create(ca, await new_thread(ca), "sleepy", input={"delay": 0.5})
        on_b = await create(cb, await new_thread(cb), "sleepy", input={"delay": 3})
        a.signal(signal.SIGTERM)
        assert await a.wait_exit() == 0, a.output()
        after = await create(cb, await new_thread(cb), "echo", input={"y": 2})
        for run_id in (on_b, after):
            rows = cluster.rows(f"SELECT thread_id FROM runs WHERE run_id = '{run_id}'")
            joined = await cb.get(f"/threads/{rows[0][0]}/runs/{run_id}/join")
            assert joined.status_code == 200
    assert cluster.run_row(on_a) == ("success", None)
    assert cluster.run_row(on_b) == ("success", None)
    assert cluster.run_row(after) == ("success", None)
    assert cluster.rows("SELECT count(*) FROM replicas") == [(1,)]


async def test_a_replica_paused_past_its_lease_is_fenced_and_exits(
    cluster: Cluster,
) -> None:
    # SIGSTOP stands for a partition or a long pause: B reaps A and ends its run. Woken,
    # A may not write any more (its commits are refused), stops the run it held and
    # exits with status 1, for its process manager to start a fresh replica.
    a, b = await cluster.start(2)
    async with clients(a, b) as (ca, cb):
        thread = await new_thread(ca)
        run_id = await create(ca, thread, "emitter", input={"n": 100000, "delay": 0.01})
        await trio.sleep(0.5)
        a.signal(signal.SIGSTOP)
        try:
            await cb.get(f"/threads/{thread}/runs/{run_id}/join")
        finally:
            a.signal(signal.SIGCONT)
        assert cluster.run_row(run_id) == ("interrupted", "restart")
        ended_at = cluster.events(run_id)
        assert await a.wait_exit(TAKEOVER) == 1, a.output()
        (fresh,) = await cluster.start(1)
        async with clients(fresh) as (cf,):
            again = await create(cf, thread, "echo", input={"z": 3})
            done = await cf.get(f"/threads/{thread}/runs/{again}/join")
    assert done.json() == {"z": 3}
    assert cluster.events(run_id) == ended_at  # nothing written by A after the reaping
    assert [event for _, event in ended_at].count("end") == 1
    assert [seq for seq, _ in ended_at] == list(range(len(ended_at)))
    assert "server.lease_lost" in a.output()
    assert len(cluster.rows("SELECT 1 FROM replicas")) == 2  # B and the fresh one


async def test_after_seconds_and_a_cancel_of_a_waiting_run_hold_across_replicas(
    cluster: Cluster,
) -> None:
    a, b = await cluster.start(2)
    async with clients(a, b) as (ca, cb):
        thread = await new_thread(ca)
        began = time.monotonic()
        delayed = await create(ca, thread, "echo", input={"d": 1}, after_seconds=1.0)
        waiting = await create(ca, thread, "echo", input={"w": 1}, multitask_strategy="enqueue")
        cancelled = await cb.post(f"/threads/{thread}/runs/{waiting}/cancel")
        assert cancelled.status_code in (200, 202, 204)
        done = await cb.get(f"/threads/{thread}/runs/{delayed}/join")
        took = time.monotonic() - began
        await cb.get(f"/threads/{thread}/runs/{waiting}/join")
    assert done.json() == {"d": 1}
    assert took >= 1.0
    assert cluster.run_row(delayed) == ("success", None)
    assert cluster.run_row(waiting) == ("interrupted", "user")
    assert [event for _, event in cluster.events(waiting)][-1] == "end"


async def test_streams_between_replicas_go_through_redis_and_survive_losing_it(
    cluster: Cluster, redis_server: redis.RedisServer
) -> None:
    # With a Redis bus, a stream through B of a run on A gets A's pushed events; Redis
    # killed mid-stream, B reads the store (nothing lost, gapless); back, it pushes again.
    a, b = await cluster.start(2, RUNYARD_BUS=redis_server.url)
    async with clients(a, b) as (ca, cb):
        thread = await new_thread(ca)
        run_id = await create(ca, thread, "emitter", input={"n": 150, "delay": 0.02})
        frames: list[Frame] = []
        async with trio.open_nursery() as nursery:
            nursery.start_soon(lambda: _extend(frames, stream(cb, thread, run_id)))
            await trio.sleep(1.0)
            redis_server.stop()
            await trio.sleep(1.0)
            redis_server.start()
        after = await create(ca, thread, "emitter", input={"n": 50, "delay": 0.02})
        later = await stream(cb, thread, after)
        metrics = (await cb.get("/metrics")).text
    assert ends(frames) == "success"
    assert ids(frames) == [seq for seq, _ in cluster.events(run_id)]
    assert ends(later) == "success"
    assert ids(later) == [seq for seq, _ in cluster.events(after)]
    # B published what Redis pushed, and read the store while Redis was away.
    for source in ("fanout", "store"):
        (count,) = re.findall(rf'runyard_followed_events_total{{source="{source}"}} (\S+)', metrics)
        assert float(count) > 0
    for server in (a, b):
        log = server.output()
        assert "fanout.down" in log
        assert log.count("fanout.up") >= 2  # up, lost, up again


async def _extend(frames: list[Frame], got: Awaitable[list[Frame]]) -> None:
    frames.extend(await got)


async def test_rollback_and_owners_hold_across_replicas(cluster: Cluster, tmp_path: Path) -> None:
    # Tokens name owners on every replica alike: a run is its owner's through any
    # replica, nobody else's; a rollback through B of a run on A deletes it once ended.
    tokens = tmp_path / "tokens"
    tokens.write_text("ann:ann-token-0123456789\nbob:bob-token-0123456789\n")
    a, b = await cluster.start(2, RUNYARD_TOKENS_FILE=str(tokens))
    ann = {"Authorization": "Bearer ann-token-0123456789"}
    bob = {"Authorization": "Bearer bob-token-0123456789"}
    async with clients(a, b, headers=ann) as (ca, cb):
        thread = await new_thread(ca)
        old = await create(ca, thread, "sleepy", input={"delay": 600})
        seen_by_bob = await cb.get(f"/threads/{thread}/runs/{old}", headers=bob)
        await trio.sleep(0.3)
        new = await create(cb, thread, "echo", input={"r": 1}, multitask_strategy="rollback")
        done = await cb.get(f"/threads/{thread}/runs/{new}/join")
        gone = await ca.get(f"/threads/{thread}/runs/{old}")
    assert seen_by_bob.status_code == 404
    assert done.json() == {"r": 1}
    assert gone.status_code == 404
    assert cluster.rows(f"SELECT count(*) FROM runs WHERE run_id = '{old}'") == [(0,)]
    assert cluster.rows(f"SELECT count(*) FROM events WHERE run_id = '{old}'") == [(0,)]
    assert cluster.rows(f"SELECT owner FROM runs WHERE run_id = '{new}'") == [("ann",)]
