"""The seam for live fan-out between replicas: committed events, pushed to whoever follows.

Without one, a replica follows the runs of the others by reading the store
(:mod:`runyard.cluster_events`); with one (Redis: :mod:`runyard.redis_fanout`)
the replica that commits a batch also pushes its events, and followers
elsewhere publish them at once. The store stays the truth: what the fan-out
carries is only ever events already committed, a follower that sees a gap
(or a fan-out that is down) reads the store, and nothing is lost when
messages are.
"""

from __future__ import annotations

import dataclasses
from typing import Protocol

import trio

from .model import Event


@dataclasses.dataclass(frozen=True, slots=True)
class FanOutStatistics:
    """What a fan-out carried so far, and lost."""

    sent: int  # events sent to the other replicas
    dropped: int  # events publish() dropped: the fan-out down, or too far behind
    received: int  # messages received for runs listened to
    overflowed: int  # batches a full listen channel did not take
    subscribed: int  # runs this replica hears of now


class FanOut(Protocol):
    """Committed events to the replicas that follow their runs."""

    @property
    def up(self) -> bool:
        """Whether messages flow now (followers rely on the store alone when not)."""

    def publish(self, events: list[Event]) -> None:
        """Push committed events (of any runs, each run's in order) without waiting;
        dropped while the fan-out is down."""

    def listen(self, run_id: str) -> trio.MemoryReceiveChannel[list[Event]]:
        """The run's events as replicas publish them, from now on, until the channel is
        closed by its reader. Batches may be lost (a full channel, a fan-out that went
        down): the reader fills any gap from the store."""

    def statistics(self) -> FanOutStatistics: ...

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Connect, start, carry messages until cancelled; reconnect while it is down."""
