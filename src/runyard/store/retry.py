"""Riding out a busy database: one bounded back-off for every read and write.

SQLite answers ``SQLITE_BUSY`` (after :data:`BUSY_TIMEOUT_MS`) when another
connection or process holds the lock it needs. Every read and write of
:class:`~runyard.store.SQLiteStore` goes through :func:`retry_busy`, which
tries again after a wait that doubles from :data:`BACKOFF_START` up to
:data:`BACKOFF_MAX`, and gives up with :class:`StoreError` once
:data:`BUSY_RETRY_SECONDS` have passed. Opening the database, before trio is
involved, uses :func:`retry_busy_sync`: the same policy with blocking waits.

Cancellation: an attempt runs in a worker thread that is never abandoned (or
on trio's own thread), so a cancel that arrives during an attempt lets it finish (its transaction
commits or rolls back whole) and lands at the next await. A cancel while
waiting for the connection or between two attempts ends the retries at once
with ``trio.Cancelled``; nothing here catches it.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

import trio

from ..errors import StoreError
from ..stats import STORE

log = logging.getLogger("runyard.store")

T = TypeVar("T")

# Short, so one attempt never outlives a cleanup deadline: the waits between
# attempts are trio sleeps, where a deadline can interrupt them.
BUSY_TIMEOUT_MS = 100
# How long a read or a write keeps retrying a locked database before it gives up.
BUSY_RETRY_SECONDS = 15.0
# The first wait between attempts (seconds), doubled after each one up to BACKOFF_MAX.
BACKOFF_START = 0.01
BACKOFF_MAX = 0.25


def is_busy(exc: sqlite3.OperationalError) -> bool:
    """Whether ``exc`` says another connection holds a lock, so a retry may succeed."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
    text = str(exc)
    return "locked" in text or "busy" in text


def _waits() -> Iterator[float]:
    """The waits between attempts, in seconds: doubling, then level."""
    delay = BACKOFF_START
    while True:
        yield delay
        delay = min(delay * 2, BACKOFF_MAX)


async def retry_busy(
    limiter: trio.CapacityLimiter, fn: Callable[[], T], *, action: str, inline: bool = False
) -> T:
    """Run ``fn`` in a worker thread (or, ``inline``, on trio's) while holding ``limiter``;
    retry it while busy.

    ``action`` ("read" or "write") names the work in errors and logs. Raises
    :class:`StoreError` when the database stays busy past the bound, and at
    once for any other database error (``fn`` rolls back its own work).
    """
    give_up = trio.current_time() + BUSY_RETRY_SECONDS
    waits = _waits()
    while True:
        try:
            async with limiter:
                if inline:
                    return fn()
                return await trio.to_thread.run_sync(fn)
        except sqlite3.OperationalError as exc:
            if not is_busy(exc):
                STORE.errors[action] += 1
                raise StoreError(f"database {action} failed: {exc}") from exc
            if trio.current_time() > give_up:
                STORE.errors[action] += 1
                raise StoreError(f"database stayed locked; {action} abandoned") from exc
        except sqlite3.DatabaseError as exc:
            STORE.errors[action] += 1
            raise StoreError(f"database {action} failed: {exc}") from exc
        except StoreError:
            STORE.errors[action] += 1  # the store is closed
            raise
        STORE.retries[action] += 1
        delay = next(waits)
        log.info("store.busy", extra={"action": action, "retry_in": delay})
        await trio.sleep(delay)


def retry_busy_sync(fn: Callable[[], T]) -> T:
    """:func:`retry_busy` for a worker thread, before trio is involved (open).

    Past the bound the busy ``sqlite3.OperationalError`` itself is raised, for
    the caller to report; nothing can cancel the blocking waits.
    """
    give_up = time.monotonic() + BUSY_RETRY_SECONDS
    waits = _waits()
    while True:
        try:
            return fn()
        except sqlite3.OperationalError as exc:
            if not is_busy(exc) or time.monotonic() > give_up:
                raise
        time.sleep(next(waits))
