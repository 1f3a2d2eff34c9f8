"""Tokens, per-owner isolation, CORS, limits, and input that must never cause a 5xx."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from runyard.config import Settings
from runyard.server import Server, serve

from .helpers import parse_frames

pytestmark = pytest.mark.trio

ALICE = "alice-token-0123456789"
BOB = "bob-token-0123456789ab"
SECRETS = ("SECRET", "hunter2", "Traceback", "Exception")


@pytest.fixture
async def secured(settings: Settings, nursery: trio.Nursery) -> AsyncIterator[Server]:
    settings.tokens = {"alice": ALICE, "bob": BOB}
    settings.cors_origins = ["https://app.example"]
    server: Server = await nursery.start(serve, settings)
    yield server
    server.request_stop()
    await server.stopped.wait()


def _client(server: Server, token: str | None) -> httpx.AsyncClient:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.AsyncClient(base_url=server.url, headers=headers, timeout=30)


async def test_requests_without_a_valid_token_get_401_except_liveness(secured: Server) -> None:
    async with _client(secured, None) as anon, _client(secured, "wrong-token-000000") as wrong:
        assert (await anon.get("/ok")).status_code == 200
        assert (await anon.get("/")).status_code == 200  # the page; its data needs a token
        for c in (anon, wrong):
            response = await c.post("/runs", json={"assistant_id": "echo"})
            assert response.status_code == 401
            assert response.headers["www-authenticate"].startswith("Bearer")
            assert response.json() == {"detail": "a valid bearer token is required"}
            assert (await c.get("/info")).status_code == 401
    async with httpx.AsyncClient(base_url=secured.url, cookies={"runyard_token": ALICE}) as c:
        assert (await c.get("/info")).status_code == 200  # the dashboard's cookie


async def test_one_owner_sees_nothing_of_another(secured: Server) -> None:
    async with _client(secured, ALICE) as alice, _client(secured, BOB) as bob:
        thread = (await alice.post("/threads", json={"metadata": {"who": "alice"}})).json()
        tid = thread["thread_id"]
        run = (
            await alice.post(
                f"/threads/{tid}/runs", json={"assistant_id": "sleepy", "input": {"delay": 60}}
            )
        ).json()
        rid = run["run_id"]
        stateless = await alice.post("/runs/wait", json={"assistant_id": "echo", "input": 1})
        s_tid, s_rid = stateless.headers["content-location"].split("/")[2::2]
        probes: list[tuple[str, str, dict[str, Any]]] = [
            ("GET", f"/threads/{tid}", {}),
            ("GET", f"/threads/{tid}/state", {}),
            ("DELETE", f"/threads/{tid}", {}),
            ("GET", f"/threads/{tid}/runs", {}),
            ("POST", f"/threads/{tid}/runs", {"json": {"assistant_id": "echo"}}),
            ("POST", f"/threads/{tid}/runs/wait", {"json": {"assistant_id": "echo"}}),
            ("POST", f"/threads/{tid}/runs/stream", {"json": {"assistant_id": "echo"}}),
            ("GET", f"/threads/{tid}/runs/{rid}", {}),
            ("GET", f"/threads/{tid}/runs/{rid}/join", {}),
            ("GET", f"/threads/{tid}/runs/{rid}/stream", {}),
            ("GET", f"/threads/{tid}/runs/{rid}/stream", {"headers": {"Last-Event-ID": "0"}}),
            ("POST", f"/threads/{tid}/runs/{rid}/cancel", {}),
            ("DELETE", f"/threads/{tid}/runs/{rid}", {}),
            ("GET", f"/runs/{rid}", {}),
            ("GET", f"/threads/{s_tid}/runs/{s_rid}", {}),
            ("GET", f"/threads/{s_tid}/runs/{s_rid}/join", {}),
        ]
        for method, path, kwargs in probes:
            response = await bob.request(method, path, **kwargs)
            assert response.status_code == 404, (method, path, response.status_code)
        assert (await bob.post("/threads/search", json={})).json() == []
        assert (await bob.get("/runs")).json() == []
        async with bob.stream("GET", "/runs/feed") as feed:
            lines = feed.aiter_lines()
            assert await anext(lines) == "event: snapshot"
            assert json.loads((await anext(lines))[6:]) == []
        # Alice's things are untouched and still hers.
        assert (await alice.get(f"/threads/{tid}/runs/{rid}")).json()["status"] == "running"
        assert len((await alice.get("/runs")).json()) == 2
        await alice.post(f"/threads/{tid}/runs/{rid}/cancel", params={"wait": 1})


async def test_cors_allows_only_the_configured_origins(secured: Server) -> None:
    async with _client(secured, ALICE) as c:
        ok = await c.get("/info", headers={"Origin": "https://app.example"})
        assert ok.headers["access-control-allow-origin"] == "https://app.example"
        other = await c.get("/info", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers
        preflight = await c.options(
            "/runs",
            headers={
                "Origin": "https://app.example",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization, content-type",
            },
        )
        assert preflight.status_code == 200
        assert "Authorization" in preflight.headers["access-control-allow-headers"]


async def test_a_non_loopback_host_without_tokens_is_refused(tmp_path: Path) -> None:
    base = [sys.executable, "-m", "runyard.cli", "serve", "--check", "--db", str(tmp_path / "x")]

    async def check(*extra: str) -> subprocess.CompletedProcess[str]:
        cmd = [*base, *extra]
        return await trio.to_thread.run_sync(
            lambda: subprocess.run(cmd, capture_output=True, text=True)
        )

    refused = await check("--host", "0.0.0.0")
    assert refused.returncode == 2
    assert refused.stderr.strip() == (
        "runyard: configuration error: host: 0.0.0.0 is reachable beyond this machine and no"
        " tokens are configured; set tokens (or tokens_file), or pass --insecure"
    )
    assert (await check("--host", "0.0.0.0", "--insecure")).returncode == 0
    tokens = tmp_path / "tokens"
    tokens.write_text("# owner:token\nalice:" + ALICE + "\n")
    config = tmp_path / "runyard.toml"
    config.write_text(f'host = "0.0.0.0"\ntokens_file = "{tokens}"\n')
    with_tokens = await check("--config", str(config))
    assert with_tokens.returncode == 0, with_tokens.stderr


async def test_limits_answer_429_with_retry_after(
    settings: Settings, nursery: trio.Nursery
) -> None:
    settings.max_active_runs_per_owner = 2
    settings.max_subscribers_per_run = 2
    settings.max_waits_per_owner = 1
    settings.max_metadata_bytes = 100
    server: Server = await nursery.start(serve, settings)
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as c:
        big = await c.post("/runs", json={"assistant_id": "echo", "metadata": {"x": "y" * 200}})
        assert big.status_code == 422
        assert "metadata" in big.json()["detail"]
        runs = [
            (await c.post("/runs", json={"assistant_id": "sleepy", "input": {"delay": 60}})).json()
            for _ in range(2)
        ]
        third = await c.post("/runs", json={"assistant_id": "echo"})
        assert third.status_code == 429
        assert third.headers["retry-after"].isdigit()
        path = f"/threads/{runs[0]['thread_id']}/runs/{runs[0]['run_id']}"
        async with c.stream("GET", f"{path}/stream"), c.stream("GET", f"{path}/stream"):
            crowded = await c.get(f"{path}/stream")
            assert crowded.status_code == 429
        async with trio.open_nursery() as waits:
            waits.start_soon(c.get, f"{path}/join")
            await trio.sleep(0.2)
            busy = await c.get(f"/threads/{runs[1]['thread_id']}/runs/{runs[1]['run_id']}/join")
            assert busy.status_code == 429
            for r in runs:
                await c.post(f"/threads/{r['thread_id']}/runs/{r['run_id']}/cancel")
        # Slots free again once runs end.
        assert (await c.post("/runs/wait", json={"assistant_id": "echo", "input": 1})).json() == 1
    server.request_stop()
    await server.stopped.wait()


async def test_patches_cannot_merge_metadata_past_the_limit(
    settings: Settings, nursery: trio.Nursery
) -> None:
    settings.max_metadata_bytes = 100
    server: Server = await nursery.start(serve, settings)
    forty = "x" * 40

    async def patched_twice(c: httpx.AsyncClient, path: str) -> None:
        """One patch fits (40 + 40 bytes), the next would not: 422, nothing merged."""
        assert (await c.patch(path, json={"metadata": {"b": forty}})).status_code == 200
        too_big = await c.patch(path, json={"metadata": {"c": forty}})
        assert too_big.status_code == 422
        assert "metadata" in too_big.json()["detail"]
        assert sorted((await c.get(path)).json()["metadata"]) == ["a", "b"]

    async with httpx.AsyncClient(base_url=server.url, timeout=30) as c:
        thread = (await c.post("/threads", json={"metadata": {"a": forty}})).json()
        await patched_twice(c, f"/threads/{thread['thread_id']}")
        cron = await c.post(
            "/runs/crons",
            json={"assistant_id": "echo", "schedule": "0 0 * * *", "metadata": {"a": forty}},
        )
        assert cron.status_code == 200, cron.text
        await patched_twice(c, f"/runs/crons/{cron.json()['cron_id']}")
    server.request_stop()
    await server.stopped.wait()


async def test_a_misbehaving_agent_gets_an_error_end_and_the_server_stays_healthy(
    settings: Settings, nursery: trio.Nursery
) -> None:
    settings.max_event_bytes = 1000
    settings.max_events_per_run = 50
    server: Server = await nursery.start(serve, settings)
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as c:
        body = {"assistant_id": "emitter", "input": {"n": 500}, "stream_mode": "custom"}
        async with c.stream("POST", "/runs/stream", json=body) as response:
            frames = parse_frames("".join([t async for t in response.aiter_text()]))[0]
        assert frames[-2].event == "error"
        assert frames[-2].data == {
            "error": "LimitExceeded",
            "message": "the run emitted more than 50 events",
        }
        assert frames[-1].data["status"] == "error"
        typed = {"assistant_id": "typewriter", "input": {"text": "x" * 5000, "rate": 0}}
        waited = (await c.post("/runs/wait", json=typed)).json()
        assert waited["__error__"]["error"] == "LimitExceeded"
        assert (await c.get("/ok")).status_code == 200
    server.request_stop()
    await server.stopped.wait()


async def test_the_sdk_api_key_is_a_token(secured: Server) -> None:
    from langgraph_sdk import get_sync_client

    def script() -> tuple[Any, int]:
        alice = get_sync_client(url=secured.url, api_key=ALICE)
        result = alice.runs.wait(None, "echo", input={"as": "alice"})
        try:
            get_sync_client(url=secured.url, api_key="not-a-token-0000000").threads.search()
        except httpx.HTTPStatusError as exc:
            return result, exc.response.status_code
        return result, 200

    result, refused = await trio.to_thread.run_sync(script)
    assert result == {"as": "alice"}
    assert refused == 401
