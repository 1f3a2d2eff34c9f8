"""The feed of run status changes the dashboard watches.

Every run is announced when it is created, when it starts running and when
its final state is persisted. Announcing never waits: a watcher that falls
:data:`WATCH_BUFFER` changes behind is dropped (its channel closes) and is
expected to take a fresh list and watch again.
"""

from __future__ import annotations

import dataclasses

import trio

from .model import Run

# Status changes a watcher may fall behind before it is dropped.
WATCH_BUFFER = 1024


class RunFeed:
    """Fan-out of run snapshots to watchers, by memory channels."""

    def __init__(self) -> None:
        self._watchers: set[trio.MemorySendChannel[Run]] = set()

    def watch(self) -> trio.MemoryReceiveChannel[Run]:
        """A channel of every run as its status changes, until :meth:`close`."""
        send, receive = trio.open_memory_channel[Run](WATCH_BUFFER)
        self._watchers.add(send)
        return receive

    def announce(self, run: Run) -> None:
        snapshot = dataclasses.replace(run)
        for send in list(self._watchers):
            try:
                send.send_nowait(snapshot)
            except (trio.WouldBlock, trio.BrokenResourceError):
                self._watchers.discard(send)
                send.close()

    def close(self) -> None:
        """End every watcher's channel (the server is shutting down)."""
        for send in self._watchers:
            send.close()
        self._watchers.clear()
