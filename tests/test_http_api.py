"""The HTTP contract (shared/API.md) against a real server on 127.0.0.1, with httpx."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
import trio

from runyard.server import Server

from .helpers import Frame, parse_frames, read_stream

pytestmark = pytest.mark.trio

SECRETS = ("SECRET", "hunter2", "Traceback", "api_key")


async def _run_to_end(client: httpx.AsyncClient, thread_id: str, run_id: str) -> dict[str, Any]:
    response = await client.get(f"/threads/{thread_id}/runs/{run_id}/join")
    assert response.status_code == 200
    run = await client.get(f"/threads/{thread_id}/runs/{run_id}")
    result: dict[str, Any] = run.json()
    return result


async def _background(client: httpx.AsyncClient, body: dict[str, Any]) -> dict[str, Any]:
    response = await client.post("/runs", json=body)
    assert response.status_code == 200, response.text
    run: dict[str, Any] = response.json()
    return run


def _assert_ids_strictly_increase(frames: list[Frame]) -> None:
    ids = [f.id for f in frames]
    assert all(isinstance(i, int) for i in ids)
    assert ids == sorted(set(ids))  # type: ignore[type-var]
    assert [f.event for f in frames].count("end") == 1
    assert frames[-1].event == "end"


async def test_ok_info_and_an_openapi_document_of_the_real_routes(
    client: httpx.AsyncClient,
) -> None:
    assert (await client.get("/ok")).json() == {"ok": True}
    info = (await client.get("/info")).json()
    assert info["durability"] == "events"
    doc = (await client.get("/openapi.json")).json()
    assert doc["openapi"].startswith("3.")
    # The runs API at least (the LangGraph routes are listed by their own tests).
    assert set(doc["paths"]) >= {
        "/",
        "/runs/feed",
        "/runs/{run_id}",
        "/ok",
        "/info",
        "/openapi.json",
        "/assistants/search",
        "/assistants/{assistant_id}",
        "/threads",
        "/threads/search",
        "/threads/{thread_id}",
        "/threads/{thread_id}/state",
        "/threads/{thread_id}/runs",
        "/threads/{thread_id}/runs/stream",
        "/threads/{thread_id}/runs/wait",
        "/threads/{thread_id}/runs/{run_id}",
        "/threads/{thread_id}/runs/{run_id}/join",
        "/threads/{thread_id}/runs/{run_id}/stream",
        "/threads/{thread_id}/runs/{run_id}/cancel",
        "/runs",
        "/runs/stream",
        "/runs/wait",
    }
    assert set(doc["paths"]["/threads/{thread_id}/runs/{run_id}"]) == {"get", "delete"}
    assert set(doc["paths"]["/runs"]) == {"get", "post"}


async def test_stream_sends_the_contracts_headers_and_frames(client: httpx.AsyncClient) -> None:
    body = {"assistant_id": "emitter", "input": {"n": 3}, "stream_mode": ["custom"]}
    async with client.stream("POST", "/runs/stream", json=body) as response:
        frames = await read_stream(response)
    headers = response.headers
    assert headers["content-type"].startswith("text/event-stream")
    assert headers["cache-control"] == "no-store"
    assert headers["x-accel-buffering"] == "no"
    content_location = headers["content-location"]
    thread_id, run_id = content_location.split("/")[2], content_location.split("/")[4]
    assert content_location == f"/threads/{thread_id}/runs/{run_id}"
    assert headers["location"].startswith(f"{content_location}/stream")
    assert [f.event for f in frames] == ["metadata", "custom", "custom", "custom", "end"]
    assert frames[0].data == {"run_id": run_id, "attempt": 1}
    assert [f.data for f in frames[1:4]] == [{"i": i, "token": "hello"} for i in range(3)]
    # The values event (id 4) is filtered out by stream_mode; its id is skipped, not reused.
    assert [f.id for f in frames] == [0, 1, 2, 3, 5]
    assert frames[-1].data == {"run_id": run_id, "status": "success"}


async def test_join_stream_replays_from_zero_then_resumes_after_last_event_id(
    client: httpx.AsyncClient,
) -> None:
    run = await _background(client, {"assistant_id": "emitter", "input": {"n": 40, "delay": 0.01}})
    path = f"/threads/{run['thread_id']}/runs/{run['run_id']}/stream"
    async with client.stream("GET", path) as response:
        full = await read_stream(response)
    assert [f.id for f in full] == list(range(43))
    _assert_ids_strictly_increase(full)
    async with client.stream("GET", path, headers={"Last-Event-ID": "10"}) as response:
        rest = await read_stream(response)
    assert [f.id for f in rest] == list(range(11, 43))
    assert [(f.event, f.data) for f in rest] == [(f.event, f.data) for f in full[11:]]


async def test_resume_while_the_run_is_live_has_no_gap_and_no_duplicate(
    client: httpx.AsyncClient,
) -> None:
    run = await _background(
        client, {"assistant_id": "emitter", "input": {"n": 200, "delay": 0.002}}
    )
    path = f"/threads/{run['thread_id']}/runs/{run['run_id']}/stream"
    seen: list[int] = []
    # Drop the connection three times mid-run, resuming from the last id each time.
    for _ in range(3):
        headers = {"Last-Event-ID": str(seen[-1])} if seen else {}
        async with client.stream("GET", path, headers=headers) as response:
            async for line in response.aiter_lines():
                if line.startswith("id: "):
                    seen.append(int(line[4:]))
                    if len(seen) % 25 == 0:
                        break
    async with client.stream("GET", path, headers={"Last-Event-ID": str(seen[-1])}) as response:
        seen += [f.id for f in await read_stream(response) if f.id is not None]
    assert seen == list(range(203))


async def test_last_event_id_must_be_a_non_negative_integer_or_minus_one(
    client: httpx.AsyncClient,
) -> None:
    run = await _background(client, {"assistant_id": "echo", "input": {}})
    path = f"/threads/{run['thread_id']}/runs/{run['run_id']}/stream"
    for bad in ("abc", "-2", "1.5"):
        response = await client.get(path, headers={"Last-Event-ID": bad})
        assert response.status_code == 400
        assert "Last-Event-ID" in response.json()["detail"]
    # -1 (what useStream sends on a reload): the whole log, as without the header.
    async with client.stream("GET", path, headers={"Last-Event-ID": "-1"}) as response:
        frames = await read_stream(response)
    assert [f.id for f in frames] == list(range(len(frames)))
    assert frames[0].event == "metadata"
    assert frames[-1].event == "end"


async def test_last_event_id_at_or_beyond_the_end_of_a_finished_run_is_204(
    client: httpx.AsyncClient,
) -> None:
    run = await _background(client, {"assistant_id": "echo", "input": {}})
    await _run_to_end(client, run["thread_id"], run["run_id"])
    path = f"/threads/{run['thread_id']}/runs/{run['run_id']}/stream"
    for after in ("2", "999"):
        response = await client.get(path, headers={"Last-Event-ID": after})
        assert response.status_code == 204
    response = await client.get(path, headers={"Last-Event-ID": "1"})
    assert [f.event for f in parse_frames(response.text)[0]] == ["end"]


async def test_last_event_id_beyond_the_end_of_a_live_run_sends_only_later_ids(
    client: httpx.AsyncClient,
) -> None:
    run = await _background(client, {"assistant_id": "emitter", "input": {"n": 30, "delay": 0.01}})
    path = f"/threads/{run['thread_id']}/runs/{run['run_id']}/stream"
    async with client.stream("GET", path, headers={"Last-Event-ID": "25"}) as response:
        frames = await read_stream(response)
    # Only ids > 25, as they came; then the end (id 32).
    assert [f.id for f in frames] == list(range(26, 33))
    async with client.stream("GET", path, headers={"Last-Event-ID": "500"}) as response:
        text = "".join([t async for t in response.aiter_text()])
    # Nothing after 500 ever came: the stream closed when the run had ended, sending nothing.
    assert response.status_code in (200, 204)
    assert parse_frames(text)[0] == []


async def test_join_stream_honours_stream_mode(client: httpx.AsyncClient) -> None:
    run = await _background(client, {"assistant_id": "emitter", "input": {"n": 2}})
    path = f"/threads/{run['thread_id']}/runs/{run['run_id']}/stream"
    response = await client.get(path, params={"stream_mode": "values"})
    frames = parse_frames(response.text)[0]
    assert [f.event for f in frames] == ["metadata", "values", "end"]
    assert frames[1].data == {"done": 2}


async def test_idle_streams_carry_heartbeats(settings: Any, nursery: trio.Nursery) -> None:
    from runyard.server import serve

    settings.heartbeat = 0.05
    server: Server = await nursery.start(serve, settings)
    async with httpx.AsyncClient(base_url=server.url) as c:
        body = {"assistant_id": "sleepy", "input": {"delay": 0.4}}
        async with c.stream("POST", "/runs/stream", json=body) as response:
            text = "".join([t async for t in response.aiter_text()])
    frames, heartbeats = parse_frames(text)
    assert heartbeats >= 2
    assert [f.event for f in frames] == ["metadata", "values", "end"]
    server.request_stop()
    await server.stopped.wait()


async def test_wait_returns_values_and_points_at_join(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/runs/wait", json={"assistant_id": "echo", "input": {"question": "é ✓ 🙂"}}
    )
    assert response.status_code == 200
    assert response.json() == {"question": "é ✓ 🙂"}
    assert response.headers["location"].endswith("/join")
    assert response.headers["content-location"].startswith("/threads/")


async def test_a_failed_run_never_leaks_its_exception_text(client: httpx.AsyncClient) -> None:
    waited = await client.post("/runs/wait", json={"assistant_id": "failing"})
    assert waited.json() == {
        "__error__": {
            "error": "DemoFailure",
            "message": "the agent failed; details are in the server log",
        }
    }
    async with client.stream("POST", "/runs/stream", json={"assistant_id": "failing"}) as response:
        text = "".join([t async for t in response.aiter_text()])
    frames = parse_frames(text)[0]
    assert [f.event for f in frames] == ["metadata", "error", "end"]
    thread_id, run_id = response.headers["content-location"].split("/")[2::2]
    everything = [
        waited.text,
        text,
        (await client.get(f"/threads/{thread_id}/runs/{run_id}")).text,
        (await client.get(f"/threads/{thread_id}/runs")).text,
        (await client.get(f"/threads/{thread_id}/runs/{run_id}/join")).text,
        (await client.get(f"/threads/{thread_id}")).text,
    ]
    for body in everything:
        for secret in SECRETS:
            assert secret not in body


async def test_cancel_with_wait_answers_the_final_run(client: httpx.AsyncClient) -> None:
    run = await _background(client, {"assistant_id": "sleepy", "input": {"delay": 60}})
    base = f"/threads/{run['thread_id']}/runs/{run['run_id']}"
    response = await client.post(f"{base}/cancel", params={"wait": "1"})
    assert response.status_code == 200
    assert response.json()["status"] == "interrupted"
    stored = (await client.get(base)).json()
    assert (stored["status"], stored["cancel_reason"]) == ("interrupted", "user")
    joined = (await client.get(f"{base}/join")).json()
    assert joined["__error__"]["error"] == "RunInterrupted"


async def test_runs_list_get_and_delete(client: httpx.AsyncClient) -> None:
    thread = (await client.post("/threads", json={})).json()
    tid = thread["thread_id"]
    first = (await client.post(f"/threads/{tid}/runs", json={"assistant_id": "echo"})).json()
    await _run_to_end(client, tid, first["run_id"])
    second = (
        await client.post(
            f"/threads/{tid}/runs", json={"assistant_id": "sleepy", "input": {"delay": 60}}
        )
    ).json()
    listed = (await client.get(f"/threads/{tid}/runs")).json()
    assert [r["run_id"] for r in listed] == [second["run_id"], first["run_id"]]
    only = (await client.get(f"/threads/{tid}/runs", params={"status": "success"})).json()
    assert [r["run_id"] for r in only] == [first["run_id"]]
    busy = await client.delete(f"/threads/{tid}/runs/{second['run_id']}")
    assert busy.status_code == 409
    assert (await client.delete(f"/threads/{tid}/runs/{first['run_id']}")).status_code == 204
    assert (await client.get(f"/threads/{tid}/runs/{first['run_id']}")).status_code == 404
    await client.post(f"/threads/{tid}/runs/{second['run_id']}/cancel", params={"wait": "true"})
    # A run is reachable only under its own thread.
    other = (await client.post("/threads", json={})).json()["thread_id"]
    assert (await client.get(f"/threads/{other}/runs/{second['run_id']}")).status_code == 404


async def test_threads_create_get_search_state_delete(client: httpx.AsyncClient) -> None:
    made = await client.post("/threads", json={"thread_id": "t-1", "metadata": {"team": "a"}})
    assert made.status_code == 200
    assert made.json()["status"] == "idle"
    again = await client.post("/threads", json={"thread_id": "t-1"})
    assert again.status_code == 409
    kept = await client.post("/threads", json={"thread_id": "t-1", "if_exists": "do_nothing"})
    assert kept.json()["metadata"] == {"team": "a"}
    await client.post("/threads", json={"metadata": {"team": "b"}})
    found = (await client.post("/threads/search", json={"metadata": {"team": "a"}})).json()
    assert [t["thread_id"] for t in found] == ["t-1"]
    waited = await client.post(
        "/threads/t-1/runs/wait", json={"assistant_id": "echo", "input": [1]}
    )
    assert waited.json() == [1]
    assert (await client.get("/threads/t-1/state")).json()["values"] == [1]
    assert (await client.get("/threads/t-1")).json()["values"] == [1]
    idle = (await client.post("/threads/search", json={"status": "idle"})).json()
    assert "t-1" in [t["thread_id"] for t in idle]
    run = (
        await client.post(
            "/threads/t-1/runs", json={"assistant_id": "sleepy", "input": {"delay": 60}}
        )
    ).json()
    assert (await client.get("/threads/t-1")).json()["status"] == "busy"
    assert (await client.delete("/threads/t-1")).status_code == 204
    assert (await client.get("/threads/t-1")).status_code == 404
    assert (await client.get(f"/threads/t-1/runs/{run['run_id']}")).status_code == 404


async def test_reject_answers_409_on_a_busy_thread(client: httpx.AsyncClient) -> None:
    first = await _background(client, {"assistant_id": "sleepy", "input": {"delay": 60}})
    tid = first["thread_id"]
    refused = await client.post(
        f"/threads/{tid}/runs", json={"assistant_id": "echo", "multitask_strategy": "reject"}
    )
    assert refused.status_code == 409
    await client.post(f"/threads/{tid}/runs/{first['run_id']}/cancel", params={"wait": 1})


async def test_a_dropped_stream_lets_the_run_finish_by_default(
    client: httpx.AsyncClient,
) -> None:
    # No on_disconnect: "continue", as the reference server reads a missing field.
    body = {"assistant_id": "emitter", "input": {"n": 30, "delay": 0.01}, "stream_mode": "custom"}
    async with client.stream("POST", "/runs/stream", json=body) as response:
        async for line in response.aiter_lines():
            if line.startswith("event: custom"):
                break
    thread_id, run_id = response.headers["content-location"].split("/")[2::2]
    run = await _run_to_end(client, thread_id, run_id)
    assert run["status"] == "success"


async def test_a_dropped_stream_with_cancel_interrupts_the_run(client: httpx.AsyncClient) -> None:
    body = {
        "assistant_id": "emitter",
        "input": {"n": 1000, "delay": 0.01},
        "stream_mode": "custom",
        "on_disconnect": "cancel",
    }
    async with client.stream("POST", "/runs/stream", json=body) as response:
        async for line in response.aiter_lines():
            if line.startswith("event: custom"):
                break
    thread_id, run_id = response.headers["content-location"].split("/")[2::2]
    run = await _run_to_end(client, thread_id, run_id)
    assert (run["status"], run["cancel_reason"]) == ("interrupted", "disconnect")


async def test_a_dropped_wait_cancels_the_run_and_persists_it(
    client: httpx.AsyncClient, server: Server
) -> None:
    thread = (await client.post("/threads", json={})).json()
    tid = thread["thread_id"]
    with trio.move_on_after(0.3):
        await client.post(
            f"/threads/{tid}/runs/wait",
            json={"assistant_id": "sleepy", "input": {"delay": 60}, "on_disconnect": "cancel"},
        )
    with trio.fail_after(10):
        while True:
            runs = (await client.get(f"/threads/{tid}/runs")).json()
            if runs and runs[0]["status"] == "interrupted":
                break
            await trio.sleep(0.02)
    assert runs[0]["cancel_reason"] == "disconnect"
    stored = await server.supervisor.store.get_run(runs[0]["run_id"])
    assert stored is not None
    assert str(stored.status) == "interrupted"


@pytest.mark.parametrize(
    ("method", "path", "content", "status", "detail"),
    [
        ("POST", "/runs", b"{not json", 400, "not valid JSON"),
        ("POST", "/runs", b"[1, 2]", 422, "JSON object"),
        ("POST", "/runs", b"{}", 422, "assistant_id"),
        ("POST", "/runs", b'{"assistant_id": "echo", "metadata": 3}', 422, "metadata"),
        ("POST", "/runs", b'{"assistant_id": "echo", "stream_mode": "loud"}', 422, "stream_mode"),
        ("POST", "/runs", b'{"assistant_id": "echo", "after_seconds": -1}', 422, "after_seconds"),
        ("POST", "/runs", b'{"assistant_id": "echo", "multitask_strategy": "x"}', 422, "multitask"),
        ("POST", "/runs", b'{"assistant_id": "nobody"}', 404, "nobody"),
        ("POST", "/threads/none/runs", b'{"assistant_id": "echo"}', 404, "thread"),
        ("POST", "/runs", b"[" * 5000 + b"]" * 5000, 422, "nests"),
        (
            "POST",
            "/runs",
            b'{"assistant_id": "echo", "input": ' + b"[" * 80 + b"]" * 80 + b"}",
            422,
            "nests",
        ),
        ("GET", "/threads/nope", b"", 404, "not found"),
        ("GET", "/threads/nope/runs/nope", b"", 404, "not found"),
        ("GET", "/nowhere", b"", 404, "not found"),
        ("PUT", "/runs", b"", 405, "not allowed"),
        ("POST", "/threads/search", b'{"limit": 0}', 422, "limit"),
        ("POST", "/threads", b'{"thread_id": 7}', 422, "thread_id"),
        ("GET", "/threads/x/runs?limit=abc", b"", 422, "limit"),
    ],
)
async def test_bad_input_gets_a_clear_4xx(
    client: httpx.AsyncClient, method: str, path: str, content: bytes, status: int, detail: str
) -> None:
    if path.startswith("/threads/x/runs"):
        await client.post("/threads", json={"thread_id": "x"})
    response = await client.request(method, path, content=content)
    assert response.status_code == status, response.text
    assert detail in response.json()["detail"]
    assert (await client.get("/ok")).status_code == 200


async def test_a_body_over_the_limit_is_413(settings: Any, nursery: trio.Nursery) -> None:
    from runyard.server import serve

    settings.max_body = 1000
    server: Server = await nursery.start(serve, settings)
    async with httpx.AsyncClient(base_url=server.url) as c:
        body = {"assistant_id": "echo", "input": "x" * 5000}
        response = await c.post("/runs", json=body)
        assert response.status_code == 413
        assert "too large" in response.json()["detail"] or "larger" in response.json()["detail"]
    server.request_stop()
    await server.stopped.wait()


async def test_new_runs_are_refused_with_503_once_shutdown_begins(
    server: Server, client: httpx.AsyncClient
) -> None:
    run = await _background(client, {"assistant_id": "sleepy", "input": {"delay": 0.5}})
    server.request_stop()
    await trio.sleep(0.05)
    refused = await client.post("/runs", json={"assistant_id": "echo"})
    assert refused.status_code == 503
    assert refused.headers["retry-after"].isdigit()
    # Reads keep working while the grace period runs.
    read = await client.get(f"/threads/{run['thread_id']}/runs/{run['run_id']}")
    assert read.status_code == 200


async def test_an_idle_keep_alive_connection_is_closed_after_its_timeout(
    settings: Any, nursery: trio.Nursery
) -> None:
    from runyard.server import serve

    settings.keep_alive_timeout = 0.3
    server: Server = await nursery.start(serve, settings)
    stream = await trio.open_tcp_stream("127.0.0.1", server.port)
    await stream.send_all(b"GET /ok HTTP/1.1\r\nHost: runyard\r\n\r\n")
    received = b""
    with trio.fail_after(10):
        while chunk := await stream.receive_some():
            received += chunk
    # The server answered, then closed the idle connection by itself.
    assert received.startswith(b"HTTP/1.1 200")
    assert received.endswith(b'{"ok":true}\n')
    await stream.aclose()
    server.request_stop()
    await server.stopped.wait()


async def test_runs_across_threads_by_id_and_the_live_feed(client: httpx.AsyncClient) -> None:
    async with client.stream("GET", "/runs/feed") as feed:
        lines = feed.aiter_lines()
        assert await anext(lines) == "event: snapshot"
        assert json.loads((await anext(lines))[len("data: ") :]) == []
        run = await _background(client, {"assistant_id": "echo", "input": {"x": 1}})
        statuses = []
        while "success" not in statuses:
            line = await anext(lines)
            if line.startswith("data: "):
                change = json.loads(line[len("data: ") :])
                assert change["run_id"] == run["run_id"]
                statuses.append(change["status"])
    assert statuses == ["pending", "running", "success"]
    by_id = (await client.get(f"/runs/{run['run_id']}")).json()
    assert (by_id["thread_id"], by_id["status"]) == (run["thread_id"], "success")
    listed = (await client.get("/runs", params={"status": "success"})).json()
    assert [r["run_id"] for r in listed] == [run["run_id"]]
    assert (await client.get("/runs/no-such-run")).status_code == 404


async def test_the_dashboard_page_is_served(client: httpx.AsyncClient) -> None:
    page = await client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "EventSource" in page.text


async def test_a_chosen_thread_id_must_be_url_and_header_safe(client: httpx.AsyncClient) -> None:
    for bad in ("a b", "a/b", "line\nbreak", "x" * 129, ""):
        response = await client.post("/threads", json={"thread_id": bad})
        assert response.status_code in (200, 422), bad  # "" means: choose one for me
        if bad:
            assert "thread_id" in response.json()["detail"]
    created = await client.post(
        "/threads/bad%0Aid/runs/wait", json={"assistant_id": "echo", "if_not_exists": "create"}
    )
    assert created.status_code == 422
    ok = await client.post("/threads", json={"thread_id": "team-a:run_1.v2"})
    assert ok.status_code == 200


async def test_a_lone_surrogate_or_nan_in_a_body_is_a_400_not_a_500(
    client: httpx.AsyncClient,
) -> None:
    for raw in (
        '{"metadata": {"name": "\\ud800"}}',
        '{"thread_id": "t", "metadata": {"\\udfff": 1}}',
        '{"metadata": {"x": NaN}}',
        '{"metadata": {"x": -Infinity}}',
    ):
        response = await client.post(
            "/threads", content=raw, headers={"content-type": "application/json"}
        )
        assert response.status_code == 400, raw
        assert "Traceback" not in response.text
    assert (await client.get("/ok")).status_code == 200
