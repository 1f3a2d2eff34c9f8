"""Wake-ups: a background loop's (:class:`Doorbell`), and many waiters' (:class:`Chime`).

A :class:`Doorbell` wakes one loop: rung when there is work, else it naps until work falls due.

The cron scheduler and the webhook sender each look at the store, then nap:
until someone rings (a cron changed, a run with a webhook ended), until the
soonest row the store holds falls due, or at most their own interval (for
rows another process wrote). A store error while asking for the soonest
falls back to the interval: no busy loop.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import trio

from .errors import StoreError
from .model import now


class Doorbell:
    """One loop's wake-up; :meth:`ring` from anywhere on trio."""

    def __init__(self) -> None:
        self._rung = trio.Event()

    def ring(self) -> None:
        self._rung.set()

    async def nap(
        self, interval: float, soonest: Callable[[], Awaitable[float | None]] | None = None
    ) -> None:
        """Until rung, ``interval`` s pass, or the time ``soonest()`` answers (unix seconds)."""
        delay = interval
        if soonest is not None:
            try:
                due = await soonest()
            except StoreError:
                due = None
            if due is not None:
                delay = min(delay, max(0.0, due - now()))
        with trio.move_on_after(delay):
            await self._rung.wait()
        self._rung = trio.Event()


class Chime:
    """A wake-up for any number of waiters: :meth:`ring` wakes every waiter at once."""

    def __init__(self) -> None:
        self._rung = trio.Event()

    def ring(self) -> None:
        self._rung.set()
        self._rung = trio.Event()

    def next_ring(self) -> trio.Event:
        """Set by the next ring: take it before looking, so no ring slips between."""
        return self._rung
