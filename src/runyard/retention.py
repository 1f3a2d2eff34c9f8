"""Data retention: finished runs older than ``data_retention`` leave the store,
and so do the memory store's items whose ttl has run out.

A store error (a database locked for long, a full disk) is logged and the
purge is tried again at the next interval: retention never stops the server.
"""

from __future__ import annotations

import logging

import trio

from .errors import StoreError
from .model import now
from .store import Store

log = logging.getLogger("runyard.retention")


async def purge_forever(store: Store, keep: float, interval: float) -> None:
    """Every ``interval`` s, delete expired items and (``keep`` > 0) finished runs last
    updated more than ``keep`` s ago."""
    while True:
        try:
            deleted = await store.purge(now() - keep) if keep else 0
            expired = await store.purge_items()
        except StoreError as exc:
            log.warning("store.purge_failed", extra={"error": type(exc).__name__})
        else:
            if deleted or expired:
                log.info("store.purged", extra={"runs": deleted, "items": expired})
        await trio.sleep(interval)
