"""Small helpers the engine tests share."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import trio

from runyard.agents import AgentRegistry
from runyard.config import Settings
from runyard.demo import demo_registry
from runyard.model import Event
from runyard.store import SQLiteStore, Store
from runyard.supervisor import Supervisor


async def collect(sup: Supervisor, run_id: str, after_seq: int = -1) -> list[Event]:
    """Every event of a run after ``after_seq``, through a subscription, to ``end``."""
    out: list[Event] = []
    async for batch in sup.subscribe(run_id, after_seq):
        out.extend(batch)
    return out


async def stored_events(store: Store, run_id: str) -> list[Event]:
    return await store.read_events(run_id, -1, 1_000_000)


def assert_gapless(events: list[Event], first: int = 0) -> None:
    """Ids are consecutive from ``first``, and the log ends with exactly one ``end``."""
    assert [e.seq for e in events] == list(range(first, first + len(events)))
    assert [e.event for e in events].count("end") == 1
    assert events[-1].event == "end"


@dataclasses.dataclass
class Frame:
    event: str
    data: Any
    id: int | None


def parse_frames(text: str) -> tuple[list[Frame], int]:
    """SSE text into frames, and the number of heartbeat comments seen."""
    frames: list[Frame] = []
    heartbeats = 0
    for block in text.split("\n\n"):
        if not block.strip():
            continue
        fields: dict[str, str] = {}
        for line in block.split("\n"):
            if line.startswith(":"):
                heartbeats += 1
                continue
            name, _, value = line.partition(": ")
            fields[name] = value
        if "event" in fields:
            ident = fields.get("id")
            frames.append(
                Frame(fields["event"], json.loads(fields["data"]), int(ident) if ident else None)
            )
    return frames, heartbeats


async def read_stream(response: httpx.Response) -> list[Frame]:
    text = "".join([chunk async for chunk in response.aiter_text()])
    return parse_frames(text)[0]


async def freeze(store: SQLiteStore) -> None:
    """Close the store under the running system, between two transactions:
    the rows stop changing as they would if the process were killed."""
    with trio.CancelScope(shield=True):
        async with store._write_limiter, store._read_limiter:
            store._close_sync()


class ThreadedServer:
    """A real server in a trio loop on its own thread, for synchronous tests
    (Hypothesis's ``@given`` runs each example outside the test's trio loop)."""

    def __init__(self, settings: Any) -> None:
        import threading

        import trio

        from runyard.server import Server, serve

        self._ready = threading.Event()
        self.server: Server | None = None
        self.error: BaseException | None = None

        async def main() -> None:
            async with trio.open_nursery() as nursery:
                self.server = await nursery.start(serve, settings)
                self.token = trio.lowlevel.current_trio_token()
                self._ready.set()

        def run() -> None:
            try:
                trio.run(main)
            except BaseException as exc:
                self.error = exc
                self._ready.set()

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        self._ready.wait(30)
        if self.error is not None:
            raise self.error
        self.url: str = self._started().url

    def _started(self) -> Any:
        if self.server is None:
            raise AssertionError("the server did not start")
        return self.server

    def close(self) -> None:
        import trio

        assert self.server is not None
        trio.from_thread.run_sync(self.server.request_stop, trio_token=self.token)
        self._thread.join(60)


async def start_supervisor(
    nursery: trio.Nursery,
    store: Store,
    agents: AgentRegistry | None = None,
    settings: Settings | None = None,
) -> Supervisor:
    """A supervisor serving on ``store`` in ``nursery`` (the demo agents by default).

    It runs until shut down or until ``nursery`` is cancelled, as a killed
    process would stop. Under an autojump clock pass a ``cleanup_deadline``
    of ``math.inf``: virtual time leaps ahead while a SQLite thread works and
    would trip any deadline (STACK_NOTES).
    """
    sup = Supervisor(store, agents or demo_registry(), settings or Settings(cleanup_deadline=5.0))
    await nursery.start(sup.serve)
    return sup


@contextlib.asynccontextmanager
async def serving(store: SQLiteStore) -> AsyncIterator[Supervisor]:
    """Open ``store``, run a supervisor with the demo agents on it, then shut
    both down (for tests that bring a store of their own)."""
    await store.open()
    try:
        async with trio.open_nursery() as nursery:
            sup = await start_supervisor(nursery, store)
            try:
                yield sup
            finally:
                await sup.shutdown(0)
    finally:
        await store.aclose()


@contextlib.contextmanager
def records_of(name: str, handler: logging.Handler) -> Iterator[None]:
    """``handler`` (caplog's) on the logger ``name`` itself, at INFO, not propagating:
    its records arrive once whether or not something in this process stopped their
    propagation, or would pass them to caplog a second time through the root."""
    logger = logging.getLogger(name)
    logger.addHandler(handler)
    level, propagate = logger.level, logger.propagate
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        logger.propagate = propagate
