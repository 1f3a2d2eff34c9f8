"""The Redis fan-out between replicas, on a real Redis of each test's own.

Two :class:`RedisFanOut` on one Redis play two replicas: one publishes what
its commit writer committed, the other listens for the runs it follows. What
Redis itself sees (which channels have subscribers, which clients are
connected) is asked through a client of the test's own.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator

import pytest

pytest.importorskip("coredis", reason="the redis extra is not installed")

import coredis
import trio

from runyard.config import ConfigError
from runyard.model import Event
from runyard.redis_fanout import CHANNEL, LISTEN_BUFFER, SWEEP, RedisFanOut

from . import redis
from .helpers import records_of

pytestmark = pytest.mark.trio

redis_server = redis.redis_server

# Seconds any one thing a test waits for may take (a test stays well under 5 s).
WAIT = 3.0
# Seconds between two looks at a state nothing signals: a fan-out's `up`, Redis's counts.
POLL = 0.01


def event(run_id: str, seq: int, kind: str = "values") -> Event:
    return Event.from_text(run_id, seq, kind, f'{{"n":{seq},"text":"ünï \\"q\\"\\n"}}')


async def started(nursery: trio.Nursery, url: str) -> RedisFanOut:
    fanout = RedisFanOut(url)
    await nursery.start(fanout.serve)
    return fanout


async def until(condition: Callable[[], bool]) -> None:
    """Wait until ``condition()`` holds: ``up`` is a property the protocol gives no
    event for (followers read it at each wait), so it is polled."""
    with trio.fail_after(WAIT):
        while not condition():  # noqa: ASYNC110
            await trio.sleep(POLL)


async def until_answer(ask: Callable[[], Awaitable[object]], expected: object) -> None:
    """Wait until Redis answers ``ask()`` with ``expected`` (it changes on its own time)."""
    with trio.fail_after(WAIT):
        while True:
            if await ask() == expected:
                return
            await trio.sleep(POLL)


async def received(channel: trio.MemoryReceiveChannel[list[Event]], count: int) -> list[Event]:
    """The next ``count`` events, however they were batched."""
    events: list[Event] = []
    with trio.fail_after(WAIT):
        while len(events) < count:
            events.extend(await channel.receive())
    return events


async def subscribed_channels(url: str) -> set[str]:
    """The channels Redis has subscribers for (a client per question: Redis may restart)."""
    async with coredis.Redis.from_url(url, decode_responses=True) as client:
        return set(await client.pubsub_channels())


async def client_count(url: str) -> int:
    """Clients connected to Redis, the one asking included."""
    async with coredis.Redis.from_url(url, decode_responses=True) as client:
        return len(await client.client_list())


@pytest.fixture
def fanout_records(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """caplog on the fan-out's logger itself, whether or not something stopped propagation."""
    with records_of("runyard.fanout", caplog.handler):
        yield caplog


def names(records: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in records.records if r.name == "runyard.fanout"]


@pytest.fixture
async def replicas(
    redis_server: redis.RedisServer, nursery: trio.Nursery
) -> tuple[RedisFanOut, RedisFanOut]:
    """Two fan-outs on the test's Redis, both up: one publishes, one listens (they stop
    with the test's nursery)."""
    publisher = await started(nursery, redis_server.url)
    follower = await started(nursery, redis_server.url)
    await until(lambda: publisher.up and follower.up)
    return publisher, follower


async def test_events_reach_the_listeners_of_their_run_only_in_order(
    replicas: tuple[RedisFanOut, RedisFanOut], redis_server: redis.RedisServer
) -> None:
    publisher, follower = replicas
    first, second = follower.listen("run-1"), follower.listen("run-1")
    other = follower.listen("run-2")
    await until(lambda: follower.up)
    assert await subscribed_channels(redis_server.url) == {CHANNEL + "run-1", CHANNEL + "run-2"}

    batches = [
        [event("run-1", 0), event("run-3", 0), event("run-1", 1), event("run-2", 0)],
        [event("run-1", 2, "end")],
    ]
    for batch in batches:
        publisher.publish(batch)

    sent = [e for batch in batches for e in batch if e.run_id == "run-1"]
    assert await received(first, 3) == sent
    assert await received(second, 3) == sent
    assert await received(other, 1) == [event("run-2", 0)]
    await trio.sleep(0.05)  # nothing more comes: run-3 is nobody's here
    with pytest.raises(trio.WouldBlock):
        first.receive_nowait()
    assert publisher.statistics().sent == 5
    assert follower.statistics().received == 3  # run-1's two messages, run-2's one


async def test_a_fanout_started_while_redis_is_down_comes_up_once_it_starts(
    redis_server: redis.RedisServer,
    nursery: trio.Nursery,
    fanout_records: pytest.LogCaptureFixture,
) -> None:
    redis_server.stop()
    with trio.fail_after(1):
        publisher = await started(nursery, redis_server.url)
        follower = await started(nursery, redis_server.url)
    listening = follower.listen("run-1")
    assert not publisher.up
    assert not follower.up
    publisher.publish([event("run-1", 0)])  # dropped, not queued for later
    assert publisher.statistics().dropped == 1
    await trio.sleep(0.5)  # a few attempts fail
    assert names(fanout_records) == ["fanout.down", "fanout.down"]  # once per fan-out

    redis_server.start()
    await until(lambda: publisher.up and follower.up)
    publisher.publish([event("run-1", 1)])
    assert await received(listening, 1) == [event("run-1", 1)]
    assert names(fanout_records)[2:] == ["fanout.up", "fanout.up"]


async def test_after_redis_restarts_delivery_resumes_for_the_runs_still_listened_to(
    replicas: tuple[RedisFanOut, RedisFanOut],
    redis_server: redis.RedisServer,
    nursery: trio.Nursery,
    fanout_records: pytest.LogCaptureFixture,
) -> None:
    publisher, follower = replicas
    kept, closed = follower.listen("run-1"), follower.listen("run-2")
    await until(lambda: follower.up)
    seq = 0

    async def publish_every_10ms() -> None:
        nonlocal seq
        while True:
            publisher.publish([event("run-1", seq), event("run-2", seq)])
            seq += 1
            await trio.sleep(0.01)

    nursery.start_soon(publish_every_10ms)
    before = await received(kept, 5)
    dropped = publisher.statistics().dropped

    redis_server.stop()
    await until(lambda: not publisher.up and not follower.up)
    publisher.publish([event("run-1", 10_000)])  # returns at once, raises nothing
    assert publisher.statistics().dropped > dropped
    closed.close()  # run-2's follower gives up meanwhile
    await trio.sleep(SWEEP)

    redis_server.start()
    await until(lambda: publisher.up and follower.up)
    assert await subscribed_channels(redis_server.url) == {CHANNEL + "run-1"}
    restarted_at = seq
    after: list[Event] = []
    while not after or after[-1].seq <= restarted_at:
        after.extend(await received(kept, 1))
    seqs = [e.seq for e in before + after]
    assert seqs == sorted(set(seqs))  # in order; what was lost in the outage is a gap
    assert 10_000 not in seqs
    assert names(fanout_records).count("fanout.down") == 2  # one warning per fan-out


async def test_closing_the_last_listen_channel_of_a_run_unsubscribes(
    replicas: tuple[RedisFanOut, RedisFanOut], redis_server: redis.RedisServer
) -> None:
    publisher, follower = replicas
    url = redis_server.url
    first, second = follower.listen("run-1"), follower.listen("run-1")
    quiet = follower.listen("run-2")
    await until(lambda: follower.up)

    first.close()
    publisher.publish([event("run-1", 0)])
    assert await received(second, 1) == [event("run-1", 0)]
    assert await subscribed_channels(url) == {CHANNEL + "run-1", CHANNEL + "run-2"}

    # A message finds the run's last channel closed: unsubscribed at once.
    second.close()
    publisher.publish([event("run-1", 1)])
    await until_answer(lambda: subscribed_channels(url), {CHANNEL + "run-2"})
    # No message comes: the sweep finds it closed.
    with trio.fail_after(SWEEP + 1):
        quiet.close()
        await until_answer(lambda: subscribed_channels(url), set())
    assert follower.up
    assert follower.statistics().subscribed == 0


async def test_a_full_listen_channel_drops_batches_without_holding_up_others(
    replicas: tuple[RedisFanOut, RedisFanOut],
) -> None:
    publisher, follower = replicas
    stalled, reading = follower.listen("run-1"), follower.listen("run-1")
    other = follower.listen("run-2")
    await until(lambda: follower.up)

    for seq in range(LISTEN_BUFFER + 5):
        publisher.publish([event("run-1", seq), event("run-2", seq)])
        assert await received(reading, 1) == [event("run-1", seq)]
        assert await received(other, 1) == [event("run-2", seq)]

    assert follower.statistics().overflowed == 5
    kept = [stalled.receive_nowait() for _ in range(LISTEN_BUFFER)]
    assert kept == [[event("run-1", seq)] for seq in range(LISTEN_BUFFER)]
    with pytest.raises(trio.WouldBlock):
        stalled.receive_nowait()


@pytest.mark.parametrize(
    "payload",
    [b"not json", b"{}", b"[]", b'[[1, "values"]]', b'[["1", "values", "{}"]]', b"[[1, 2, 3]]"],
)
async def test_a_message_that_does_not_decode_is_ignored(
    replicas: tuple[RedisFanOut, RedisFanOut], redis_server: redis.RedisServer, payload: bytes
) -> None:
    publisher, follower = replicas
    listening = follower.listen("run-1")
    await until(lambda: follower.up)
    async with coredis.Redis.from_url(redis_server.url) as client:
        assert await client.publish(CHANNEL + "run-1", payload) == 1
    publisher.publish([event("run-1", 0)])
    assert await received(listening, 1) == [event("run-1", 0)]
    assert follower.up
    assert follower.statistics().received == 1


@pytest.mark.parametrize("redis_up", [True, False])
async def test_cancelling_serve_ends_it_promptly_and_closes_its_connections(
    redis_server: redis.RedisServer, redis_up: bool
) -> None:
    if not redis_up:
        redis_server.stop()
    async with trio.open_nursery() as nursery:
        fanout = await started(nursery, redis_server.url)
        fanout.listen("run-1")
        if redis_up:
            await until(lambda: fanout.up)
            fanout.publish([event("run-1", 0)])
        else:
            await trio.sleep(0.3)  # attempts and back-off
        began = trio.current_time()
        nursery.cancel_scope.cancel()
    assert trio.current_time() - began < 0.5
    assert not fanout.up
    if not redis_up:
        redis_server.start()
    await until_answer(lambda: client_count(redis_server.url), 1)  # the one asking


@pytest.mark.parametrize(
    "url", ["", "localhost:6379", "http://localhost", "redis://", "unix://", "redis://h:x/0"]
)
async def test_a_bus_url_coredis_cannot_use_is_a_config_error(url: str) -> None:
    with pytest.raises(ConfigError, match="bus: "):
        RedisFanOut(url)


async def test_a_bus_url_is_shown_without_its_password() -> None:
    with pytest.raises(ConfigError) as refused:
        RedisFanOut("http://user:secret@host")
    assert "secret" not in str(refused.value)
    assert "user@host" in str(refused.value)
