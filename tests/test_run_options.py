"""The run body's LangGraph fields, thread-less joins, /wait keep-alives and CORS, over HTTP."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import trio

from runyard.config import Settings
from runyard.http import runs as runs_module
from runyard.server import Server, serve

from .helpers import read_stream


async def test_a_command_without_a_thread_is_a_400(client: httpx.AsyncClient) -> None:
    body = {"assistant_id": "echo", "command": {"resume": "yes"}}
    response = await client.post("/runs", json=body)
    assert response.status_code == 400
    assert "command" in response.json()["detail"]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("command", {"jump": "x"}),
        ("command", {"goto": 3}),
        ("checkpoint", {"checkpoint_id": 7}),
        ("checkpoint_id", ["x"]),
        ("interrupt_before", "node"),
        ("interrupt_after", [1]),
        ("durability", "forever"),
        ("on_completion", "shred"),
        ("stream_subgraphs", "yes"),
    ],
)
async def test_bad_langgraph_fields_are_422_naming_the_field(
    client: httpx.AsyncClient, field: str, value: Any
) -> None:
    thread = (await client.post("/threads", json={})).json()
    body = {"assistant_id": "echo", field: value}
    response = await client.post(f"/threads/{thread['thread_id']}/runs", json=body)
    assert response.status_code == 422
    assert field.split("_id")[0] in response.json()["detail"]


async def test_langgraph_fields_are_kept_with_the_run(client: httpx.AsyncClient) -> None:
    thread = (await client.post("/threads", json={})).json()
    body = {
        "assistant_id": "echo",
        "input": {"x": 1},
        "checkpoint_id": "1ef-abc",
        "interrupt_before": "*",
        "stream_subgraphs": True,
        "durability": "sync",
        "stream_mode": ["values", "tools", "lifecycle"],
    }
    run = (await client.post(f"/threads/{thread['thread_id']}/runs", json=body)).json()
    kwargs = run["kwargs"]
    assert kwargs["checkpoint"] == {"checkpoint_id": "1ef-abc"}
    assert (kwargs["interrupt_before"], kwargs["stream_subgraphs"]) == ("*", True)
    assert kwargs["durability"] == "sync"


async def test_on_completion_delete_removes_a_threadless_runs_thread(
    client: httpx.AsyncClient,
) -> None:
    body = {"assistant_id": "echo", "input": {"v": 1}, "on_completion": "delete"}
    answer = await client.post("/runs/wait", json=body)
    assert answer.json() == {"v": 1}
    thread_id = answer.headers["content-location"].split("/")[2]
    with trio.fail_after(5):
        while True:
            if (await client.get(f"/threads/{thread_id}")).status_code == 404:
                break
            await trio.sleep(0.02)
    kept = await client.post("/runs/wait", json={"assistant_id": "echo", "input": {"v": 2}})
    kept_thread = kept.headers["content-location"].split("/")[2]
    assert (await client.get(f"/threads/{kept_thread}")).status_code == 200


async def test_a_threadless_run_is_joined_by_its_id_alone(client: httpx.AsyncClient) -> None:
    body = {"assistant_id": "emitter", "input": {"n": 3}, "stream_mode": "custom"}
    run = (await client.post("/runs", json=body)).json()
    async with client.stream("GET", f"/runs/{run['run_id']}/stream") as response:
        frames = await read_stream(response)
    assert [f.event for f in frames] == ["metadata", "custom", "custom", "custom", "values", "end"]
    assert [f.id for f in frames] == [0, 1, 2, 3, 4, 5]
    joined = await client.get(f"/runs/{run['run_id']}/join")
    assert joined.status_code == 200
    cancelled = await client.post(f"/runs/{run['run_id']}/cancel")
    assert cancelled.json()["status"] == "success"  # ended already: left as it is


async def test_a_long_wait_sends_newlines_until_the_answer(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runs_module, "WAIT_KEEPALIVE", 0.05)
    body = {"assistant_id": "sleepy", "input": {"delay": 0.4}}
    async with client.stream("POST", "/runs/wait", json=body) as response:
        raw = b"".join([chunk async for chunk in response.aiter_bytes()])
    assert response.status_code == 200
    assert raw.startswith(b"\n\n")
    assert httpx.Response(200, content=raw).json() == {"done": 1}
    run = await client.post("/runs", json={"assistant_id": "sleepy", "input": {"delay": 0.4}})
    tid, rid = run.json()["thread_id"], run.json()["run_id"]
    async with client.stream("GET", f"/threads/{tid}/runs/{rid}/join") as response:
        raw = b"".join([chunk async for chunk in response.aiter_bytes()])
    assert raw.startswith(b"\n")
    assert httpx.Response(200, content=raw).json() == {"done": 1}


async def test_cors_preflight_allows_what_the_langgraph_sdks_send(
    settings: Settings, nursery: trio.Nursery
) -> None:
    settings.cors_origins = ["https://chat.example"]
    server: Server = await nursery.start(serve, settings)
    async with httpx.AsyncClient(base_url=server.url) as c:
        response = await c.options(
            "/threads/x",
            headers={
                "Origin": "https://chat.example",
                "Access-Control-Request-Method": "PATCH",
                "Access-Control-Request-Headers": "x-api-key, x-auth-scheme",
            },
        )
    allowed_methods = response.headers["access-control-allow-methods"]
    allowed_headers = response.headers["access-control-allow-headers"].lower()
    assert {"PATCH", "PUT"} <= {m.strip() for m in allowed_methods.split(",")}
    assert {"x-api-key", "x-auth-scheme"} <= {h.strip() for h in allowed_headers.split(",")}
    server.request_stop()
    await server.stopped.wait()
