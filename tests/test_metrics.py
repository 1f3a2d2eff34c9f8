"""Operable in production: /metrics, /ready, request ids in the logs, JSON log lines."""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families

from runyard.config import ConfigError, Settings, load
from runyard.http.app import create_app
from runyard.logs import RequestIdFilter
from runyard.server import Server, serve
from runyard.store import SQLiteStore
from runyard.supervisor import Supervisor

from .helpers import records_of
from .process import ServerProcess, free_port

pytestmark = pytest.mark.trio

TOKEN = "metrics-token-0123456789"


def _samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of a scrape, by name and labels."""
    found = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            found[s.name, frozenset(s.labels.items())] = s.value
    return found


def _value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def _scrape(client: httpx.AsyncClient) -> dict[Any, float]:
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return _samples(response.text)


async def test_metrics_count_runs_by_agent_and_status_commits_and_requests(
    client: httpx.AsyncClient,
) -> None:
    for _ in range(2):
        done = await client.post("/runs/wait", json={"assistant_id": "emitter", "input": {"n": 5}})
        assert done.status_code == 200
    await client.post("/runs/wait", json={"assistant_id": "failing"})
    body = {"assistant_id": "emitter", "input": {"n": 20}, "stream_mode": ["custom"]}
    streamed = await client.post("/runs/stream", json=body)
    assert streamed.status_code == 200
    assert (await client.get("/runs/no-such-run")).status_code == 404
    await client.get("/no/such/route")
    sleepy = (
        await client.post("/runs", json={"assistant_id": "sleepy", "input": {"delay": 600}})
    ).json()
    with trio.fail_after(10):
        while True:
            m = await _scrape(client)
            if _value(m, "runyard_runs_active", agent="sleepy") == 1:
                break
            await trio.sleep(0.02)

    assert _value(m, "runyard_runs_finished_total", agent="emitter", status="success") == 3
    assert _value(m, "runyard_runs_finished_total", agent="failing", status="error") == 1
    assert _value(m, "runyard_runs_admitted_total", agent="sleepy") == 1
    assert _value(m, "runyard_run_duration_seconds_count", agent="emitter") == 3
    assert _value(m, "runyard_runs_queued", agent="sleepy") == 0
    # 5 + 5 + 20 custom events, plus each run's metadata, values/error and end.
    assert _value(m, "runyard_events_committed_total") >= 30 + 4 * 3
    assert _value(m, "runyard_commit_batch_events_count") > 0
    assert _value(m, "runyard_commit_batch_events_sum") == _value(
        m, "runyard_events_committed_total"
    )
    assert _value(m, "runyard_commit_seconds_count") == _value(
        m, "runyard_commit_transactions_total"
    )
    assert _value(m, "runyard_commit_batch_events_bucket", le="+Inf") == _value(
        m, "runyard_commit_batch_events_count"
    )
    assert _value(m, "runyard_stream_bytes_total") >= len(streamed.content)
    assert _value(m, "runyard_accepting_runs") == 1
    requests = "runyard_http_requests_total"
    assert _value(m, requests, route="/runs/wait", method="POST", status="200") == 3
    assert _value(m, requests, route="/runs/stream", method="POST", status="200") == 1
    assert _value(m, requests, route="/runs/<run_id>", method="GET", status="404") == 1
    assert _value(m, requests, route="<unmatched>", method="GET", status="404") == 1
    latency = "runyard_http_request_duration_seconds_count"
    assert _value(m, latency, route="/runs/wait", method="POST") == 3
    assert any(name == "process_resident_memory_bytes" for name, _ in m)
    await client.post(f"/threads/{sleepy['thread_id']}/runs/{sleepy['run_id']}/cancel")


async def test_open_streams_and_waits_are_gauges(client: httpx.AsyncClient) -> None:
    run = (
        await client.post("/runs", json={"assistant_id": "sleepy", "input": {"delay": 600}})
    ).json()
    path = f"/threads/{run['thread_id']}/runs/{run['run_id']}"
    async with trio.open_nursery() as nursery:

        async def join() -> None:
            await client.get(f"{path}/join")

        async def stream() -> None:
            async with client.stream("GET", f"{path}/stream") as response:
                async for _ in response.aiter_bytes():
                    pass

        nursery.start_soon(join)
        nursery.start_soon(stream)
        with trio.fail_after(10):
            while True:
                m = await _scrape(client)
                if _value(m, "runyard_streams_open") == 1 and _value(m, "runyard_waits_open") == 1:
                    break
                await trio.sleep(0.02)
        await client.post(f"{path}/cancel")
    m = await _scrape(client)
    assert _value(m, "runyard_streams_open") == 0
    assert _value(m, "runyard_waits_open") == 0
    assert _value(m, "runyard_runs_finished_total", agent="sleepy", status="interrupted") == 1


async def test_metrics_need_a_token_when_tokens_are_on_and_ready_does_not(
    settings: Settings, nursery: trio.Nursery
) -> None:
    settings.tokens = {"ops": TOKEN}
    server: Server = await nursery.start(serve, settings)
    async with httpx.AsyncClient(base_url=server.url) as anon:
        assert (await anon.get("/metrics")).status_code == 401
        assert (await anon.get("/ready")).status_code == 200
        m = _samples((await anon.get("/metrics", headers={"x-api-key": TOKEN})).text)
    assert _value(m, "runyard_http_requests_total", route="/metrics", method="GET", status="401")
    server.request_stop()
    await server.stopped.wait()


async def test_ready_is_200_then_503_while_draining(
    settings: Settings, nursery: trio.Nursery
) -> None:
    settings.grace = 30
    server: Server = await nursery.start(serve, settings)
    async with httpx.AsyncClient(base_url=server.url) as c:
        ready = await c.get("/ready")
        assert (ready.status_code, ready.json()) == (200, {"ready": True})
        await c.post("/runs", json={"assistant_id": "sleepy", "input": {"delay": 600}})
        server.request_stop()  # the sleepy run holds the drain in its grace period
        with trio.fail_after(5):
            while True:  # the drain begins in the server's own task
                draining = await c.get("/ready")
                if draining.status_code != 200:
                    break
                await trio.sleep(0.01)
        assert (draining.status_code, draining.json()) == (
            503,
            {"ready": False, "reason": "draining"},
        )
        assert draining.headers["connection"] == "close"
        assert (await c.get("/ok")).status_code == 200  # still alive
    server.request_stop()  # a second stop ends the grace period
    await server.stopped.wait()


async def test_ready_is_503_when_the_store_is_closed(
    server: Server, client: httpx.AsyncClient
) -> None:
    assert (await client.get("/ready")).status_code == 200
    # The store's counters are the process's (other tests' stores count there too).
    before = _value(await _scrape(client), "runyard_store_errors_total", action="read")
    await server.supervisor.store.aclose()
    response = await client.get("/ready")
    assert (response.status_code, response.json()) == (503, {"ready": False, "reason": "store"})
    after = _value(await _scrape(client), "runyard_store_errors_total", action="read")
    assert after >= before + 1


async def test_ready_is_503_until_recovery_has_finished(db_path: str) -> None:
    store = SQLiteStore(db_path)
    await store.open()
    try:
        settings = Settings(db=db_path)
        supervisor = Supervisor(store, settings.registry(), settings)  # not serving yet
        app = create_app(supervisor, settings)
        response = await app.test_client().get("/ready")
        assert response.status_code == 503
        assert await response.get_json() == {"ready": False, "reason": "starting"}
    finally:
        await store.aclose()


async def test_a_request_id_is_echoed_generated_or_replaced_when_unsafe(
    client: httpx.AsyncClient,
) -> None:
    given = "req-2026.12.01:abc_DEF+/="
    assert (await client.get("/ok", headers={"X-Request-ID": given})).headers[
        "x-request-id"
    ] == given
    generated = (await client.get("/ok")).headers["x-request-id"]
    assert len(generated) == 32
    assert int(generated, 16) >= 0
    assert (await client.get("/ok")).headers["x-request-id"] != generated
    for unsafe in ("has space", "x" * 129, 'quote"d', "semi;colon", ""):
        echoed = (await client.get("/ok", headers={"X-Request-ID": unsafe})).headers
        assert echoed["x-request-id"] != unsafe
        assert len(echoed["x-request-id"]) == 32
    refused = await client.get("/no/such/route", headers={"X-Request-ID": "on-a-404"})
    assert refused.headers["x-request-id"] == "on-a-404"


@pytest.fixture
def runyard_records(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """caplog with the request-id filter, on the runyard logger itself: the records
    arrive once whether or not something in this process stopped propagation."""
    caplog.handler.addFilter(RequestIdFilter())
    with records_of("runyard", caplog.handler):
        yield caplog


async def test_the_request_id_is_on_the_request_lines_and_on_its_runs_lines(
    client: httpx.AsyncClient, runyard_records: pytest.LogCaptureFixture
) -> None:
    body = {"assistant_id": "sleepy", "input": {"delay": 600}}
    run = (await client.post("/runs", json=body, headers={"X-Request-ID": "create-1"})).json()
    path = f"/threads/{run['thread_id']}/runs/{run['run_id']}"
    # A later request ends the run: the run's lines keep the id of the one that made it.
    cancel = await client.post(f"{path}/cancel?wait=true", headers={"X-Request-ID": "cancel-2"})
    assert cancel.status_code == 200
    failed = await client.post(
        "/runs/wait", json={"assistant_id": "failing"}, headers={"X-Request-ID": "fail-3"}
    )
    assert failed.status_code == 200

    records = runyard_records.records

    def ids(event: str, **fields: Any) -> list[str | None]:
        return [
            getattr(r, "request_id", None)
            for r in records
            if r.getMessage() == event and all(getattr(r, k, None) == v for k, v in fields.items())
        ]

    assert ids("http.request", path="/runs", status=200) == ["create-1"]
    assert ids("http.request", path=f"{path}/cancel", status=200) == ["cancel-2"]
    assert ids("run.finished", run_id=run["run_id"]) == ["create-1"]
    assert ids("run.finished", status="error") == ["fail-3"]
    # The agent's traceback (logged by the run's task) carries it too.
    failures = [r for r in records if r.levelno >= logging.ERROR and r.exc_info]
    assert failures
    assert {getattr(r, "request_id", None) for r in failures} == {"fail-3"}
    # Lines no request caused have none.
    assert all(
        getattr(r, "request_id", None) is None for r in records if r.name == "runyard.server"
    )


class _Flags(ServerProcess):
    """A ``runyard serve`` process with extra flags."""

    def __init__(self, db: str, port: int, log_dir: Path, *flags: str) -> None:
        super().__init__(db, port, log_dir)
        self.flags = flags

    def start(self) -> None:
        with self.log_path.open("wb") as log:
            cmd = [sys.executable, "-m", "runyard.cli", "serve", "--host", "127.0.0.1"]
            cmd += ["--port", str(self.port), "--db", self.db, *self.flags]
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=self.env)


@pytest.fixture
def started(tmp_path: Path) -> Iterator[list[ServerProcess]]:
    processes: list[ServerProcess] = []
    yield processes
    for p in processes:
        p.ensure_stopped()


async def test_log_format_json_writes_one_object_a_line(
    tmp_path: Path, started: list[ServerProcess]
) -> None:
    server = _Flags(str(tmp_path / "db.sqlite3"), free_port(), tmp_path, "--log-format", "json")
    started.append(server)
    server.start()
    await server.wait_ready()
    async with httpx.AsyncClient(base_url=server.url) as c:
        body = {"assistant_id": "emitter", "input": {"n": 3}}
        await c.post("/runs/wait", json=body, headers={"X-Request-ID": "json-1"})
    server.signal(signal.SIGTERM)
    assert await server.wait_exit() == 0
    lines = [json.loads(line) for line in server.output().splitlines()]
    assert all({"time", "level", "logger", "event"} <= set(line) for line in lines)
    assert all(line["time"].endswith("Z") for line in lines)
    by_event = {line["event"]: line for line in lines}
    assert {"server.started", "http.request", "run.finished", "server.stopped"} <= set(by_event)
    access = [line for line in lines if line["event"] == "http.request"]
    expected = {"method": "POST", "path": "/runs/wait", "status": 200, "request_id": "json-1"}
    assert expected.items() <= access[-1].items()
    assert by_event["run.finished"]["request_id"] == "json-1"
    assert "request_id" not in by_event["server.started"]


async def test_log_level_flag_and_format_setting(
    tmp_path: Path, started: list[ServerProcess]
) -> None:
    server = _Flags(str(tmp_path / "db.sqlite3"), free_port(), tmp_path, "--log-level", "warning")
    started.append(server)
    server.start()
    await server.wait_ready()
    server.signal(signal.SIGTERM)
    assert await server.wait_exit() == 0
    assert "server.started" not in server.output()
    assert load(env={"RUNYARD_LOG_FORMAT": "json"}).log_format == "json"
    assert Settings().log_format == "text"
    with pytest.raises(ConfigError, match="log_format"):
        load(env={"RUNYARD_LOG_FORMAT": "yaml"})
