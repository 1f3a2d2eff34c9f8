"""The fan-out on Redis pub/sub: committed events, one message per run per batch.

:meth:`RedisFanOut.publish` only queues (the commit writer never waits for
Redis); a sender task takes what is queued and sends each batch's events of
each run as one message to that run's channel (:data:`CHANNEL` + run id),
every message of a round in one pipelined round trip. A message is compact
JSON, ``[[seq, event, data], ...]``, ``data`` being the event's JSON text.

:meth:`RedisFanOut.listen` gives a run's messages, decoded into events, to
a memory channel; the replica subscribes to the run's channel while anyone
listens, and unsubscribes once every listen channel of the run is closed
(noticed when a message finds them closed, or at the next sweep). Nothing
waits on a reader: a full listen channel drops the batch, and a message that
does not decode is ignored; readers fill such gaps from the store.

:meth:`RedisFanOut.serve` owns the connections. It reports started at once,
Redis or not: runyard starts without Redis, and followers read the store
while the fan-out is down. A lost connection ends everything it carried
(queued batches are dropped, :attr:`~RedisFanOut.up` turns False, one
warning is logged); connecting again backs off from :data:`RETRY_FIRST` to
:data:`RETRY_MAX` seconds, and every run still listened to is subscribed
again. Each attempt uses a fresh client, so nothing of a broken connection
(coredis's pool included) outlives it.

Channels are global to a Redis server (not per database number); run ids
are UUIDs, so clusters that share a Redis do not hear each other's runs.
"""

from __future__ import annotations

import logging
import math
import urllib.parse

import coredis
import orjson
import trio
from coredis.exceptions import RedisError
from coredis.patterns.pubsub import PubSub
from coredis.retry import NoRetryPolicy

from .config import ConfigError
from .doorbell import Doorbell
from .fanout import FanOutStatistics
from .model import Event

log = logging.getLogger("runyard.fanout")

# A run's channel is this and the run id: one per run, so a replica hears only the runs
# it follows.
CHANNEL = "runyard:events:"
# Committed batches waiting for the sender before publish() drops them (their events are
# the run logs' own, not copies).
OUTBOX = 256
# Batches whose messages go in one round trip at most.
ROUND = 64
# Messages a listen channel holds for a reader that has not taken them; past it, batches
# are dropped and the reader reads the store.
LISTEN_BUFFER = 64
# Seconds between two looks for listen channels their readers closed: how long a run
# nobody follows any more stays subscribed, if no message for it comes first.
SWEEP = 1.0
# Seconds between two attempts to connect while Redis is down: the first wait, and the longest.
RETRY_FIRST = 0.1
RETRY_MAX = 2.0
# Seconds to connect, and to wait for a reply (or a subscription's acknowledgement),
# before Redis counts as down.
CONNECT_TIMEOUT = 2.0
REPLY_TIMEOUT = 5.0
# Seconds of silence on the subscriber's connection before it PINGs Redis: how long a Redis
# that vanished without closing the connection (a network partition) goes unnoticed, plus
# REPLY_TIMEOUT.
KEEPALIVE = 5.0
# URL schemes coredis connects with: TCP, TLS, a unix socket.
SCHEMES = ("redis", "rediss", "unix")


class RedisFanOut:
    """Committed events to the replicas that follow their runs, through Redis pub/sub.

    ``url`` is ``redis://HOST:PORT/N``, ``rediss://...`` or ``unix:///path/redis.sock``
    (:class:`ConfigError` otherwise); nothing connects before :meth:`serve`.
    """

    def __init__(self, url: str) -> None:
        self._url = check_url(url)
        self._outbox_in, self._outbox = trio.open_memory_channel[list[Event]](OUTBOX)
        self._listeners: dict[str, list[trio.MemorySendChannel[list[Event]]]] = {}
        self._subscribed: set[str] = set()  # runs Redis acknowledged, on this connection
        self._wanted = Doorbell()  # rung when runs start or stop being listened to
        self._connected = False
        self._outage = False  # Redis is down, and that was logged
        self._up_at: float | None = None  # when this connection came up
        self._sent = self._dropped = self._received = self._overflowed = 0

    @property
    def up(self) -> bool:
        """Connected, and subscribed to every run listened to."""
        return self._connected and self._listeners.keys() <= self._subscribed

    def publish(self, events: list[Event]) -> None:
        """Queue committed events; never waits: while Redis is down, or too far behind, they
        are dropped (followers read them from the store)."""
        if not events:
            return
        if not self._connected:
            self._dropped += len(events)
            return
        try:
            self._outbox_in.send_nowait(events)
        except trio.WouldBlock:
            self._dropped += len(events)

    def listen(self, run_id: str) -> trio.MemoryReceiveChannel[list[Event]]:
        """The run's events as replicas publish them, until the reader closes the channel."""
        send, receive = trio.open_memory_channel[list[Event]](LISTEN_BUFFER)
        listeners = self._listeners.setdefault(run_id, [])
        listeners.append(send)
        if len(listeners) == 1:
            self._wanted.ring()
        return receive

    def statistics(self) -> FanOutStatistics:
        return FanOutStatistics(
            self._sent, self._dropped, self._received, self._overflowed, len(self._subscribed)
        )

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Connect, carry messages until cancelled; connect again whenever Redis is lost.

        Started at once, before the first attempt. No failure ends it, Redis's or
        another (the fan-out only hastens followers; a warning says what failed);
        cancellation does, at any await, within coredis's own bounded cleanup
        (an unsubscribe it waits 0.1 s for, at most).
        """
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._sweep)
            task_status.started()
            retry = RETRY_FIRST
            while True:
                failure: Exception | None = None
                try:
                    await self._session()
                except* Exception as group:
                    failure = _first(group)
                if self._up_at is not None and trio.current_time() - self._up_at >= RETRY_MAX:
                    retry = RETRY_FIRST  # it had stayed up: a new outage (a flapping one backs off)
                if not self._outage:  # it was up, or this was the first attempt
                    self._outage = True
                    log.warning(
                        "fanout.down",
                        extra={"bus": _redact(self._url), "error": _describe(failure)},
                        exc_info=_unexpected(failure),
                    )
                await trio.sleep(retry)
                retry = min(retry * 2, RETRY_MAX)

    async def _session(self) -> None:
        """One connection's life: subscribe, send and receive until it fails."""
        self._up_at = None
        client = coredis.Redis.from_url(
            self._url,
            retry_policy=NoRetryPolicy(),  # a failure ends the session; serve tries again
            connect_timeout=CONNECT_TIMEOUT,
            stream_timeout=REPLY_TIMEOUT,
        )
        async with client:
            await client.ping()
            async with client.pubsub(
                ignore_subscribe_messages=True,
                retry_policy=None,  # its own reconnecting would hide an outage from `up`
                subscription_timeout=REPLY_TIMEOUT,
                max_idle_seconds=KEEPALIVE,
            ) as pubsub:
                self._connected = True
                try:
                    await self._subscribe(pubsub)
                    self._outage, self._up_at = False, trio.current_time()
                    log.info("fanout.up", extra={"bus": _redact(self._url)})
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(self._send, client)
                        nursery.start_soon(self._receive, pubsub)
                        while True:
                            await self._wanted.nap(math.inf)
                            await self._subscribe(pubsub)
                finally:
                    self._connected = False
                    self._subscribed.clear()
                    self._drop_outbox()

    async def _subscribe(self, pubsub: PubSub[bytes]) -> None:
        """Subscribe to the runs listened to, unsubscribe from the others."""
        new = [run_id for run_id in self._listeners if run_id not in self._subscribed]
        if new:
            await pubsub.subscribe(*(CHANNEL + run_id for run_id in new))
            self._subscribed.update(new)
        old = [run_id for run_id in self._subscribed if run_id not in self._listeners]
        if old:
            # Its acknowledgement is waited for briefly only: a late one changes nothing.
            await pubsub.unsubscribe(*(CHANNEL + run_id for run_id in old))
            self._subscribed.difference_update(old)

    async def _send(self, client: coredis.Redis[bytes]) -> None:
        while True:
            batches = [await self._outbox.receive()]
            while len(batches) < ROUND:
                try:
                    batches.append(self._outbox.receive_nowait())
                except trio.WouldBlock:
                    break
            messages = [message for batch in batches for message in self._encode(batch)]
            async with client.pipeline(transaction=False, timeout=REPLY_TIMEOUT) as pipe:
                for channel, payload, _ in messages:
                    pipe.publish(channel, payload)
            self._sent += sum(count for _, _, count in messages)

    def _encode(self, events: list[Event]) -> list[tuple[str, bytes, int]]:
        """One message per run: its channel, ``[[seq, event, data], ...]``, how many events."""
        runs: dict[str, list[tuple[int, str, str]]] = {}
        for e in events:
            runs.setdefault(e.run_id, []).append((e.seq, e.event, e.data))
        messages = []
        for run_id, rows in runs.items():
            try:
                messages.append((CHANNEL + run_id, orjson.dumps(rows), len(rows)))
            except orjson.JSONEncodeError:  # text JSON cannot carry (a lone surrogate)
                self._dropped += len(rows)
        return messages

    async def _receive(self, pubsub: PubSub[bytes]) -> None:
        while True:
            message = await pubsub.get_message()
            if message is None or message["type"] != "message":
                continue  # acknowledgements
            channel, data = message["channel"], message["data"]
            if isinstance(channel, bytes):
                channel = channel.decode(errors="replace")
            run_id = channel.removeprefix(CHANNEL)
            if run_id not in self._listeners or isinstance(data, int):
                continue
            events = _decode(run_id, data)
            if events is not None:
                self._received += 1
                self._deliver(run_id, events)

    def _deliver(self, run_id: str, events: list[Event]) -> None:
        """To each listen channel of the run (one list for all: readers do not change it)."""
        listeners = self._listeners[run_id]
        for send in list(listeners):
            try:
                send.send_nowait(events)
            except trio.WouldBlock:
                self._overflowed += 1
            except trio.BrokenResourceError:
                listeners.remove(send)
                send.close()
        if not listeners:
            del self._listeners[run_id]
            self._wanted.ring()

    async def _sweep(self) -> None:
        """Forget listen channels their readers closed (the run's last: unsubscribe)."""
        while True:
            await trio.sleep(SWEEP)
            for run_id, listeners in list(self._listeners.items()):
                for send in [s for s in listeners if s.statistics().open_receive_channels == 0]:
                    listeners.remove(send)
                    send.close()
                if not listeners:
                    del self._listeners[run_id]
                    self._wanted.ring()

    def _drop_outbox(self) -> None:
        """Batches queued for a connection that is gone: by the next, followers have read
        them from the store."""
        while True:
            try:
                self._dropped += len(self._outbox.receive_nowait())
            except trio.WouldBlock:
                return


def _decode(run_id: str, payload: str | bytes) -> list[Event] | None:
    """A message's events; None if it is not what :meth:`RedisFanOut._encode` writes."""
    try:
        rows = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(rows, list) or not rows:
        return None
    events = []
    for row in rows:
        match row:
            case [int() as seq, str() as event, str() as data]:
                events.append(Event.from_text(run_id, seq, event, data))
            case _:
                return None
    return events


def check_url(url: str) -> str:
    """``url``, if coredis can connect with it; :class:`ConfigError` if not."""
    parts = urllib.parse.urlsplit(url)
    try:
        port_ok = parts.port is None or parts.port > 0
    except ValueError:  # not a number, or past 65535
        port_ok = False
    where = parts.path if parts.scheme == "unix" else parts.hostname
    if parts.scheme not in SCHEMES or not where or not port_ok:
        raise ConfigError(
            f"bus: {_redact(url)!r} is not redis://HOST:PORT/N nor unix:///path/redis.sock"
        )
    return url


def _redact(url: str) -> str:
    """``url`` as logs and messages may show it: without its password."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    user, _, where = parts.netloc.rpartition("@")
    return parts._replace(netloc=f"{user.partition(':')[0]}@{where}").geturl()


def _first(group: BaseExceptionGroup[Exception]) -> Exception:
    failure = group.exceptions[0]
    return _first(failure) if isinstance(failure, BaseExceptionGroup) else failure


def _describe(failure: Exception | None) -> str:
    """What failed, by type: messages may quote a command's arguments (events' data)."""
    if failure is None:
        return "closed"
    cause = failure.__cause__
    return type(failure).__name__ + (f" ({type(cause).__name__})" if cause else "")


def _unexpected(failure: Exception | None) -> bool:
    """Not Redis down or refusing: worth a traceback."""
    return failure is not None and not isinstance(failure, (RedisError, OSError))
