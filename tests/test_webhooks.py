"""Webhooks: a run's final state reaches a real receiver on 127.0.0.1, signed, retried
for a bounded time, after a kill -9, and never at an address webhooks may not reach."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import ipaddress
import json
import os
import shutil
import signal
import socket
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from runyard.config import Settings
from runyard.errors import Invalid
from runyard.model import DeliveryState, RunRequest
from runyard.server import Server
from runyard.store import SQLiteStore
from runyard.supervisor import Supervisor
from runyard.webhook_policy import WebhookPolicy
from runyard.webhooks import SIGNATURE_HEADER, TIMESTAMP_HEADER, backoff, signature

from .helpers import start_supervisor
from .process import ServerProcess, free_port

SECRET = "a-webhook-secret-for-tests"
JS_WEBHOOK = Path(__file__).with_name("js") / "webhook.mjs"
# Seconds the tests wait for a webhook at most.
PATIENCE = 15.0


@dataclasses.dataclass
class Received:
    path: str
    headers: dict[str, str]  # lower-case names
    body: bytes
    at: float

    def json(self) -> Any:
        return json.loads(self.body)


class Receiver:
    """A real HTTP/1.1 server on 127.0.0.1 that records each POST and answers, in turn,
    the statuses it was given (then 200)."""

    def __init__(self, statuses: tuple[int, ...] = (), port: int = 0) -> None:
        self.statuses = list(statuses)
        self.port = port
        self.received: list[Received] = []
        self._changed = trio.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(self.port, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        task_status.started()
        await trio.serve_listeners(self._handle, listeners)

    async def wait_for(self, count: int) -> list[Received]:
        with trio.fail_after(PATIENCE):
            while len(self.received) < count:
                await self._changed.wait()
                self._changed = trio.Event()
        return self.received

    async def _handle(self, stream: trio.SocketStream) -> None:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = await stream.receive_some()
            if not chunk:
                return
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        request_line, *lines = head.decode("latin-1").split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines)}
        while len(body) < int(headers.get("content-length", "0")):
            body += await stream.receive_some()
        self.received.append(Received(request_line.split()[1], headers, body, time.time()))
        self._changed.set()
        status = self.statuses.pop(0) if self.statuses else 200
        await stream.send_all(
            f"HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode()
        )
        await stream.aclose()


@pytest.fixture
async def receiver(nursery: trio.Nursery) -> Receiver:
    found = Receiver()
    await nursery.start(found.serve)
    return found


def _settings(**changes: Any) -> Settings:
    base = Settings(
        cleanup_deadline=5.0,
        webhook_secret=SECRET,
        webhook_allowed_hosts=["127.0.0.1"],
        webhook_backoff=0.2,
    )
    return dataclasses.replace(base, **changes)


@pytest.fixture
def settings(db_path: str) -> Settings:
    """The server fixture's settings: webhooks signed, and allowed to reach 127.0.0.1."""
    return _settings(host="127.0.0.1", port=0, db=db_path, grace=1.0)


async def _delivered(sup: Supervisor, run_id: str, state: DeliveryState) -> Any:
    with trio.fail_after(PATIENCE):
        while True:
            delivery = await sup.store.get_delivery(run_id)
            if delivery is not None and delivery.state is state:
                return delivery
            await trio.sleep(0.05)


def _verified(received: Received) -> bool:
    stamp = int(received.headers[TIMESTAMP_HEADER.lower()])
    mac = hmac.new(SECRET.encode(), f"{stamp}.".encode() + received.body, hashlib.sha256)
    return received.headers[SIGNATURE_HEADER.lower()] == "v1=" + mac.hexdigest()


# -- the policy, the signature, the back-off ---------------------------------------


def test_urls_to_private_loopback_or_link_local_addresses_are_refused_unless_allowed() -> None:
    policy = WebhookPolicy()
    for url in (
        "https://example.com/hook",
        "http://93.184.216.34:8080/x",
        "https://[2606:4700::1]/",
    ):
        assert policy.check_url(url) == url
    refused = (
        "http://127.0.0.1/hook", "http://localhost:8000/", "http://api.localhost/",
        "http://10.0.0.7/", "http://192.168.1.1/", "http://169.254.169.254/latest/meta-data",
        "http://[::1]/", "http://[::ffff:127.0.0.1]/", "http://0.0.0.0/", "http://100.64.0.1/",
    )  # fmt: skip
    for url in refused:
        with pytest.raises(Invalid, match="webhook_allowed_hosts"):
            policy.check_url(url)
    for url in ("ftp://example.com/", "example.com/hook", "http:///x", "http://u:p@example.com/"):
        with pytest.raises(Invalid, match="'webhook'"):
            policy.check_url(url)
    allowed = WebhookPolicy(["127.0.0.1", "10.0.0.0/8", "localhost"])
    for url in ("http://127.0.0.1:9/", "http://10.1.2.3/", "http://localhost/"):
        assert allowed.check_url(url) == url
    assert not allowed.allows("elsewhere", ipaddress.ip_address("192.168.0.1"))
    assert allowed.allows("localhost", ipaddress.ip_address("::1"))


def test_the_signature_is_an_hmac_of_the_timestamp_and_the_body() -> None:
    body = b'{"run_id":"r"}'
    expected = hmac.new(b"k", b"1700000000." + body, hashlib.sha256).hexdigest()
    assert signature("k", 1700000000, body) == "v1=" + expected


def test_the_back_off_doubles_up_to_five_minutes() -> None:
    assert [backoff(n, 2.0) for n in (1, 2, 3, 4)] == [2.0, 4.0, 8.0, 16.0]
    assert backoff(40, 2.0) == 300.0


# -- delivery --------------------------------------------------------------------


async def test_a_run_s_final_state_is_posted_once_signed_in_the_reference_shape(
    store: SQLiteStore, nursery: trio.Nursery, receiver: Receiver
) -> None:
    sup = await start_supervisor(nursery, store, settings=_settings())
    handle = await sup.create_run(
        RunRequest("echo", {"hi": 1}, metadata={"m": 1}, webhook=receiver.url)
    )
    run = await sup.wait_run(handle.run_id)
    (got,) = await receiver.wait_for(1)
    assert got.path == "/hook"
    assert got.headers["content-type"] == "application/json"
    assert got.headers["x-runyard-delivery"] == run.run_id
    assert got.headers["x-runyard-attempt"] == "1"
    assert _verified(got)
    assert abs(int(got.headers["x-runyard-timestamp"]) - time.time()) < 60
    body = got.json()
    assert body["run_id"] == run.run_id
    assert body["thread_id"] == run.thread_id
    assert body["status"] == "success"
    assert body["metadata"] == {"m": 1}
    assert body["values"] == {"hi": 1}
    assert body["error"] is None
    assert body["kwargs"]["webhook"] == receiver.url
    for stamp in ("run_started_at", "run_ended_at", "webhook_sent_at", "created_at"):
        assert body[stamp].endswith("+00:00")
    delivery = await _delivered(sup, run.run_id, DeliveryState.DELIVERED)
    assert delivery.attempts == 1
    (attempt,) = await store.delivery_attempts(run.run_id)
    assert (attempt.outcome, attempt.status_code) == ("delivered", 200)
    await trio.sleep(0.3)
    assert len(receiver.received) == 1
    await sup.shutdown(0)


@pytest.mark.skipif(
    shutil.which("node") is None and os.environ.get("CI") != "true",
    reason="node is not installed (required on CI)",
)
async def test_runs_made_through_both_sdks_post_their_webhook_signed(
    server: Server, receiver: Receiver
) -> None:
    from langgraph_sdk import get_sync_client

    def python_sdk() -> str:
        client = get_sync_client(url=server.url, api_key=None)
        run = client.runs.create(None, "echo", input={"via": "python"}, webhook=receiver.url)
        return str(run["run_id"])

    python_run = await trio.to_thread.run_sync(python_sdk)
    js = await trio.run_process(
        ["node", str(JS_WEBHOOK), server.url, receiver.url],
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    assert js.returncode == 0, js.stderr.decode()
    js_run = js.stdout.decode().strip()
    got = await receiver.wait_for(2)
    assert all(_verified(r) for r in got)
    by_run = {r.json()["run_id"]: r.json() for r in got}
    assert by_run[python_run]["values"] == {"via": "python"}
    assert by_run[js_run]["values"] == {"via": "js"}
    assert {b["status"] for b in by_run.values()} == {"success"}


async def test_a_receiver_that_fails_twice_gets_it_the_third_time_and_the_run_is_unchanged(
    store: SQLiteStore, nursery: trio.Nursery, receiver: Receiver
) -> None:
    receiver.statuses = [500, 503]
    sup = await start_supervisor(nursery, store, settings=_settings())
    handle = await sup.create_run(RunRequest("failing", {"delay": 0}, webhook=receiver.url))
    run = await sup.wait_run(handle.run_id)
    received = await receiver.wait_for(3)
    assert [r.headers["x-runyard-attempt"] for r in received] == ["1", "2", "3"]
    assert received[2].at - received[1].at >= 0.4 - 0.05  # the back-off doubled
    body = received[0].json()
    assert body["status"] == "error"
    assert body["error"]["error"] == "DemoFailure"
    await _delivered(sup, run.run_id, DeliveryState.DELIVERED)
    attempts = await store.delivery_attempts(run.run_id)
    assert [(a.outcome, a.status_code) for a in attempts] == [
        ("rejected", 500), ("rejected", 503), ("delivered", 200)
    ]  # fmt: skip
    stored = await store.get_run(run.run_id)
    assert stored is not None
    assert stored.status == "error"
    assert sup.webhooks.stats.attempts == {"rejected": 2, "delivered": 1}
    await sup.shutdown(0)


async def test_a_receiver_that_never_answers_2xx_is_given_up_after_the_retry_time(
    store: SQLiteStore, nursery: trio.Nursery, receiver: Receiver
) -> None:
    receiver.statuses = [500] * 100
    sup = await start_supervisor(nursery, store, settings=_settings(webhook_retry_for=1.0))
    handle = await sup.create_run(RunRequest("echo", {}, webhook=receiver.url))
    delivery = await _delivered(sup, handle.run_id, DeliveryState.FAILED)
    # 0.2 s, 0.4 s, then the next wait would end past the second the retries may take.
    assert delivery.attempts == 3
    assert len(receiver.received) == 3
    await sup.shutdown(0)


async def test_a_host_resolving_to_a_private_address_is_refused_when_it_connects(
    store: SQLiteStore, nursery: trio.Nursery, receiver: Receiver
) -> None:
    name = socket.gethostname()
    addresses = {ipaddress.ip_address(a[4][0]) for a in socket.getaddrinfo(name, None)}
    if any(a.is_global for a in addresses):
        pytest.skip(f"{name} resolves to a global address here")
    # Allowed by address only: the name is checked by what it resolves to, and refused.
    sup = await start_supervisor(
        nursery, store, settings=_settings(webhook_allowed_hosts=["203.0.113.9"])
    )
    url = f"http://{name}:{receiver.port}/hook"
    handle = await sup.create_run(RunRequest("echo", {}, webhook=url))
    delivery = await _delivered(sup, handle.run_id, DeliveryState.REFUSED)
    assert delivery.attempts == 1
    (attempt,) = await store.delivery_attempts(handle.run_id)
    assert attempt.outcome == "refused"
    assert receiver.received == []
    await sup.shutdown(0)


# -- over HTTP ---------------------------------------------------------------------


async def test_a_webhook_at_a_private_address_is_a_422_when_the_run_is_made(
    client: httpx.AsyncClient,
) -> None:
    for url in ("http://10.0.0.1/hook", "http://localhost:9/hook", "http://169.254.169.254/"):
        response = await client.post("/runs", json={"assistant_id": "echo", "webhook": url})
        assert response.status_code == 422
        assert "'webhook'" in response.json()["detail"]


async def test_the_attempts_are_listed_by_route_and_counted_in_metrics(
    server: Server, client: httpx.AsyncClient, receiver: Receiver
) -> None:
    receiver.statuses = [502]
    thread = (await client.post("/threads", json={})).json()["thread_id"]
    run = (
        await client.post(
            f"/threads/{thread}/runs",
            json={"assistant_id": "echo", "input": {"a": 1}, "webhook": receiver.url},
        )
    ).json()
    await receiver.wait_for(2)
    await _delivered(server.supervisor, run["run_id"], DeliveryState.DELIVERED)
    listed = (await client.get(f"/threads/{thread}/runs/{run['run_id']}/webhook")).json()
    assert listed["url"] == receiver.url
    assert listed["state"] == "delivered"
    assert [(a["attempt"], a["outcome"], a["status_code"]) for a in listed["attempts"]] == [
        (1, "rejected", 502), (2, "delivered", 200)
    ]  # fmt: skip
    assert (await client.get(f"/runs/{run['run_id']}/webhook")).json() == listed
    text = (await client.get("/metrics")).text
    assert 'runyard_webhook_attempts_total{outcome="rejected"} 1.0' in text
    assert 'runyard_webhook_attempts_total{outcome="delivered"} 1.0' in text
    assert 'runyard_webhooks_settled_total{state="delivered"} 1.0' in text


async def test_a_run_without_a_webhook_has_none_to_list(client: httpx.AsyncClient) -> None:
    await client.post("/runs/wait", json={"assistant_id": "echo"})
    runs = (await client.get("/runs")).json()
    response = await client.get(f"/runs/{runs[0]['run_id']}/webhook")
    assert response.status_code == 404
    assert (await client.get("/runs/no-such-run/webhook")).status_code == 404


# -- kill -9 -------------------------------------------------------------------------


@pytest.fixture
def processes() -> Iterator[list[ServerProcess]]:
    started: list[ServerProcess] = []
    yield started
    for p in started:
        p.ensure_stopped()


def _pending(db: str, run_id: str) -> str | None:
    with sqlite3.connect(db) as conn:
        row = conn.execute("SELECT state FROM webhooks WHERE run_id = ?", (run_id,)).fetchone()
    return None if row is None else str(row[0])


def _attempts(db: str, run_id: str) -> int:
    with sqlite3.connect(db) as conn:
        sql = "SELECT count(*) FROM webhook_attempts WHERE run_id = ?"
        return int(conn.execute(sql, (run_id,)).fetchone()[0])


async def test_a_kill_9_after_the_final_state_still_delivers_after_the_restart(
    tmp_path: Path, processes: list[ServerProcess], nursery: trio.Nursery
) -> None:
    db = str(tmp_path / "runyard.sqlite3")
    port = free_port()
    receiver = Receiver(port=free_port())  # not listening yet: the first attempts fail
    env = {
        "RUNYARD_WEBHOOK_ALLOWED_HOSTS": "127.0.0.1",
        "RUNYARD_WEBHOOK_SECRET": SECRET,
        "RUNYARD_WEBHOOK_BACKOFF": "0.5",
    }
    first = ServerProcess(db, port, tmp_path, **env)
    processes.append(first)
    first.start()
    await first.wait_ready()
    async with httpx.AsyncClient(base_url=first.url, timeout=30) as c:
        body = {"assistant_id": "echo", "input": {"n": 9}, "webhook": receiver.url}
        run = (await c.post("/runs/wait", json=body)).json()
        runs = (await c.get("/runs")).json()
    run_id = runs[0]["run_id"]
    assert run == {"n": 9}
    assert _pending(db, run_id) == "pending"  # written with the final state, not delivered
    # Killed between two attempts (one killed during an attempt is sent again once its
    # lease, the attempt's timeout and a margin, has run out: at least once).
    with trio.fail_after(PATIENCE):
        while True:
            if _attempts(db, run_id) >= 1:
                break
            await trio.sleep(0.02)
    first.signal(signal.SIGKILL)
    assert await first.wait_exit() == -signal.SIGKILL
    await nursery.start(receiver.serve)
    second = ServerProcess(db, port, tmp_path, **env)
    processes.append(second)
    second.start()
    await second.wait_ready()
    (got,) = await receiver.wait_for(1)
    assert got.json()["run_id"] == run_id
    assert got.json()["values"] == {"n": 9}
    assert _verified(got)
    with trio.fail_after(PATIENCE):
        while True:
            if _pending(db, run_id) == "delivered":
                break
            await trio.sleep(0.05)
