"""Small helpers the engine tests share."""

from __future__ import annotations

from runyard.model import Event
from runyard.store import SQLiteStore
from runyard.supervisor import Supervisor


async def collect(sup: Supervisor, run_id: str, after_seq: int = -1) -> list[Event]:
    """Every event of a run after ``after_seq``, through a subscription, to ``end``."""
    out: list[Event] = []
    async for batch in sup.subscribe(run_id, after_seq):
        out.extend(batch)
    return out


async def stored_events(store: SQLiteStore, run_id: str) -> list[Event]:
    return await store.read_events(run_id, -1, 1_000_000)


def assert_gapless(events: list[Event], first: int = 0) -> None:
    """Ids are consecutive from ``first``, and the log ends with exactly one ``end``."""
    assert [e.seq for e in events] == list(range(first, first + len(events)))
    assert [e.event for e in events].count("end") == 1
    assert events[-1].event == "end"
