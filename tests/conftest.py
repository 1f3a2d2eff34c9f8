"""Shared fixtures: a real SQLite file per test, and a running supervisor."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import trio

from runyard.config import Settings
from runyard.server import Server, serve
from runyard.store import SQLiteStore
from runyard.supervisor import Supervisor

from .helpers import start_supervisor


@pytest.fixture
def db_path(tmp_path: Path) -> str:
    return str(tmp_path / "runyard.sqlite3")


@pytest.fixture
async def store(db_path: str) -> AsyncIterator[SQLiteStore]:
    s = SQLiteStore(db_path)
    await s.open()
    try:
        yield s
    finally:
        await s.aclose()


@pytest.fixture
async def supervisor(
    store: SQLiteStore, nursery: trio.Nursery, request: pytest.FixtureRequest
) -> AsyncIterator[Supervisor]:
    mock_time = "autojump_clock" in request.fixturenames
    deadline = math.inf if mock_time else 5.0
    sup = await start_supervisor(nursery, store, settings=Settings(cleanup_deadline=deadline))
    yield sup
    await sup.shutdown(grace=0)


@pytest.fixture
def settings(db_path: str) -> Settings:
    """A server on 127.0.0.1, an ephemeral port, a fresh SQLite file, demo agents."""
    return Settings(host="127.0.0.1", port=0, db=db_path, grace=1.0, heartbeat=15.0)


@pytest.fixture
async def server(settings: Settings, nursery: trio.Nursery) -> AsyncIterator[Server]:
    running: Server = await nursery.start(serve, settings)
    yield running
    running.request_stop()
    await running.stopped.wait()


@pytest.fixture
async def client(server: Server) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as c:
        yield c
