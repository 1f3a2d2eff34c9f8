"""A real LangGraph project (tests/lg_project) served with --langgraph-json,
driven through a real server by the langgraph-sdk client. Offline: the chat
model is langchain-core's GenericFakeChatModel."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

pytest.importorskip("langgraph", reason="the runyard[langgraph] extra is not installed")

from langgraph_sdk import get_sync_client

from runyard.config import Settings
from runyard.server import Server, serve

pytestmark = pytest.mark.trio

PROJECT = Path(__file__).with_name("lg_project")
HELLO = {"messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
async def lg_server(settings: Settings, nursery: trio.Nursery) -> AsyncIterator[Server]:
    settings.langgraph_json = str(PROJECT / "langgraph.json")
    settings.grace = 0.2
    server: Server = await nursery.start(serve, settings)
    yield server
    server.request_stop()
    await server.stopped.wait()


def _cleanups() -> list[str]:
    module = sys.modules["runyard_graph_assistant"]
    cleanups: list[str] = module.CLEANUPS
    return cleanups


async def _sdk(server: Server, script: Any) -> Any:
    return await trio.to_thread.run_sync(
        lambda: script(get_sync_client(url=server.url, api_key=None, timeout=30))
    )


async def test_stream_modes_map_to_the_events_langgraph_clients_expect(lg_server: Server) -> None:
    def script(c: Any) -> list[Any]:
        modes = ["values", "updates", "custom", "messages-tuple"]
        return list(c.runs.stream(None, "assistant", input=HELLO, stream_mode=modes))

    parts = await _sdk(lg_server, script)
    events = [p.event for p in parts]
    assert events[0] == "metadata"
    assert events[-1] == "end"
    assert {"values", "updates", "custom", "messages"} <= set(events)
    customs = [p.data for p in parts if p.event == "custom"]
    assert customs == [*({"plan_step": i} for i in range(3)), {"slow": "started"}]
    tokens = [p.data[0]["content"] for p in parts if p.event == "messages"]
    assert "".join(tokens) == "hello there friend"
    assert [next(iter(p.data)) for p in parts if p.event == "updates"] == ["plan", "chat", "slow"]
    last_values = [p.data for p in parts if p.event == "values"][-1]
    assert last_values["steps"] == ["plan", "chat", "slow"]
    assert events.count("values") == 4, "no duplicate final values event"


async def test_wait_returns_the_final_values_and_they_become_the_thread_state(
    lg_server: Server,
) -> None:
    def script(c: Any) -> tuple[Any, Any, str]:
        thread = c.threads.create()
        result = c.runs.wait(thread["thread_id"], "assistant", input=HELLO)
        return result, c.threads.get_state(thread["thread_id"]), thread["thread_id"]

    result, state, thread_id = await _sdk(lg_server, script)
    assert result["steps"] == ["plan", "chat", "slow"]
    assert [m["content"] for m in result["messages"]] == ["hi", "hello there friend"]
    assert result["seen_thread"] == thread_id, "configurable.thread_id reached the graph"
    assert state["values"] == result


async def test_join_and_join_stream(lg_server: Server) -> None:
    def script(c: Any) -> tuple[Any, list[Any]]:
        run = c.runs.create(None, "assistant", input=HELLO, stream_mode=["custom", "updates"])
        joined = c.runs.join(run["thread_id"], run["run_id"])
        parts = list(c.runs.join_stream(run["thread_id"], run["run_id"], stream_mode="custom"))
        return joined, parts

    joined, parts = await _sdk(lg_server, script)
    assert joined["steps"] == ["plan", "chat", "slow"]
    assert [p.event for p in parts] == ["metadata", *["custom"] * 4, "end"]


async def test_cancel_mid_node_cancels_the_graph_and_its_cleanup_runs(lg_server: Server) -> None:
    before = len(_cleanups())

    def script(c: Any) -> Any:
        run = c.runs.create(
            None, "assistant", input={**HELLO, "slow": 600}, stream_mode=["values", "custom"]
        )
        for part in c.runs.join_stream(run["thread_id"], run["run_id"], stream_mode="custom"):
            if part.event == "custom" and part.data == {"slow": "started"}:
                break  # the graph is now in its slow node
        c.runs.cancel(run["thread_id"], run["run_id"], wait=True)
        return c.runs.get(run["thread_id"], run["run_id"])

    run = await _sdk(lg_server, script)
    assert (run["status"], run["cancel_reason"]) == ("interrupted", "user")
    assert _cleanups()[before:] == ["slow node cleaned up"]


async def test_shutdown_mid_node_persists_interrupted(
    settings: Settings, nursery: trio.Nursery
) -> None:
    settings.langgraph_json = str(PROJECT / "langgraph.json")
    settings.grace = 0.1
    server: Server = await nursery.start(serve, settings)
    async with httpx.AsyncClient(base_url=server.url) as c:
        run = (
            await c.post(
                "/runs", json={"assistant_id": "assistant", "input": {**HELLO, "slow": 600}}
            )
        ).json()
        async with c.stream("GET", f"/threads/{run['thread_id']}/runs/{run['run_id']}/stream") as s:
            async for line in s.aiter_lines():
                if line.startswith("data: ") and '"chat"' in line:
                    break
    server.request_stop()
    await server.stopped.wait()
    import sqlite3

    row = (
        sqlite3.connect(settings.db)
        .execute("SELECT status, cancel_reason FROM runs WHERE run_id = ?", (run["run_id"],))
        .fetchone()
    )
    assert row == ("interrupted", "shutdown")


async def test_a_graph_registered_by_module_attribute(
    settings: Settings, nursery: trio.Nursery
) -> None:
    sys.path.insert(0, str(PROJECT))
    try:
        settings.agents = {"lg": "graph:graph"}
        server: Server = await nursery.start(serve, settings)
        async with httpx.AsyncClient(base_url=server.url) as c:
            result = await c.post("/runs/wait", json={"assistant_id": "lg", "input": HELLO})
        assert result.json()["steps"] == ["plan", "chat", "slow"]
        server.request_stop()
        await server.stopped.wait()
    finally:
        sys.path.remove(str(PROJECT))


async def test_a_broken_langgraph_json_is_one_clear_line(tmp_path: Path) -> None:
    from runyard.config import ConfigError

    bad = tmp_path / "langgraph.json"
    bad.write_text('{"graphs": {"x": "./nowhere.py:graph"}}')
    with pytest.raises(ConfigError, match="graph 'x'"):
        Settings(langgraph_json=str(bad)).registry()


async def test_a_background_run_without_stream_mode_logs_every_mode(lg_server: Server) -> None:
    async with httpx.AsyncClient(base_url=lg_server.url) as c:
        run = (await c.post("/runs", json={"assistant_id": "assistant", "input": HELLO})).json()
        path = f"/threads/{run['thread_id']}/runs/{run['run_id']}/stream"
        response = await c.get(path, params={"stream_mode": "updates"})
    events = [line[7:] for line in response.text.splitlines() if line.startswith("event: ")]
    assert events == ["metadata", "updates", "updates", "updates", "end"]


async def test_graph_runs_left_by_a_crash_are_settled_at_restart(db_path: str) -> None:
    from runyard.model import RunRequest
    from runyard.store import SQLiteStore

    from .helpers import assert_gapless, freeze, start_supervisor

    registry = Settings(langgraph_json=str(PROJECT / "langgraph.json")).registry()
    store = SQLiteStore(db_path)
    await store.open()
    async with trio.open_nursery() as first:
        sup = await start_supervisor(first, store, registry)
        busy = await sup.create_run(
            RunRequest("assistant", {**HELLO, "slow": 600}, stream_mode=["updates"])
        )
        queued = await sup.create_run(
            RunRequest("assistant", {**HELLO, "slow": 0}, thread_id=busy.run.thread_id)
        )
        events = sup.subscribe(busy.run_id)
        while not any(e.event == "updates" and "chat" in e.data for e in await events.next() or []):
            pass
        await freeze(store)  # as kill -9 leaves the file: mid-node, and one run queued
        first.cancel_scope.cancel()
    again = SQLiteStore(db_path)
    await again.open()
    async with trio.open_nursery() as second:
        sup2 = await start_supervisor(second, again, registry)
        dead = await again.get_run(busy.run_id)
        assert dead is not None
        assert (str(dead.status), str(dead.cancel_reason)) == ("interrupted", "restart")
        assert_gapless(await again.read_events(busy.run_id, -1, 1000))
        finished = await sup2.wait_run(queued.run_id)
        assert str(finished.status) == "success"
        # The thread kept the dead run's checkpointed steps; the queued run added its own.
        assert finished.output["steps"] == ["plan", "chat", "plan", "chat", "slow"]
        await sup2.shutdown(0)
    await again.aclose()
