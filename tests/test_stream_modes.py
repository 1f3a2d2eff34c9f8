"""Every stream mode of a graph run, as the reference server sends it, through a
real server and the langgraph-sdk client. The graph (tests/lg_stream) writes
custom events, streams a fake chat model, calls a tool, runs a subgraph that
streams a reply of its own, and returns a finished message."""

from __future__ import annotations

import re
import sqlite3
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trio

pytest.importorskip("langgraph", reason="the runyard[langgraph] extra is not installed")

from langgraph_sdk import get_sync_client

from runyard.config import Settings
from runyard.server import Server, serve

pytestmark = pytest.mark.trio

PROJECT = Path(__file__).with_name("lg_stream")
HELLO: dict[str, Any] = {"messages": [{"role": "user", "content": "hi"}], "tokens": 5}
# A run of the graph: values after its input and each of its 4 nodes, one checkpoint more.
STEPS = 5
CHECKPOINTS = STEPS + 1
CHECKPOINT_KEYS = {"config", "parent_config", "values", "metadata", "next", "tasks"}
# Ids that differ from one run to the next: uuids, and checkpoint ids in LangGraph's format.
VARYING = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


@pytest.fixture
async def lg_server(settings: Settings, nursery: trio.Nursery) -> AsyncIterator[Server]:
    settings.langgraph_json = str(PROJECT / "langgraph.json")
    settings.grace = 0.2
    server: Server = await nursery.start(serve, settings)
    yield server
    server.request_stop()
    await server.stopped.wait()


async def _stream(server: Server, modes: list[str], **kwargs: Any) -> list[Any]:
    def script() -> list[Any]:
        c: Any = get_sync_client(url=server.url, api_key=None, timeout=30)
        return list(c.runs.stream(None, "streamer", input=HELLO, stream_mode=modes, **kwargs))

    return await trio.to_thread.run_sync(script)


def _names(parts: list[Any]) -> list[str]:
    return [p.event for p in parts]


def _assert_gapless(parts: list[Any]) -> None:
    assert [int(p.id) for p in parts] == list(range(len(parts)))


async def test_each_mode_names_its_events_as_the_reference_does(lg_server: Server) -> None:
    modes = ["values", "updates", "custom", "tasks", "checkpoints", "tools", "lifecycle"]
    parts = await _stream(lg_server, modes)
    names = _names(parts)
    assert (names[0], names[-1]) == ("metadata", "end")
    _assert_gapless(parts)
    assert set(names) == {
        "metadata",
        "values",
        "updates",
        "custom",
        "tasks",
        "checkpoints",
        "tools",
        "end",
    }
    assert names.count("values") == STEPS
    assert names.count("checkpoints") == CHECKPOINTS
    assert [p.data for p in parts if p.event == "custom"] == [{"plan": "ready"}]
    assert [next(iter(p.data)) for p in parts if p.event == "updates"] == [
        "plan",
        "chat",
        "inner",
        "answer",
    ]
    tasks = [p.data for p in parts if p.event == "tasks"]
    assert [(t["name"], "result" in t) for t in tasks[:2]] == [("plan", False), ("plan", True)]
    checkpoint = [p.data for p in parts if p.event == "checkpoints"][-1]
    assert set(checkpoint) >= CHECKPOINT_KEYS
    assert checkpoint["values"]["steps"] == ["plan", "chat", "answer"]
    tools = [p.data for p in parts if p.event == "tools"]
    assert [t["event"] for t in tools] == ["tool-started", "tool-finished"]
    assert (tools[0]["tool_name"], tools[1]["output"]) == ("lookup", "found runyard")


async def test_debug_sends_checkpoints_and_tasks_in_the_reference_shape(
    lg_server: Server,
) -> None:
    parts = await _stream(lg_server, ["debug"])
    debug = [p.data for p in parts if p.event == "debug"]
    assert _names(parts) == ["metadata", *["debug"] * len(debug), "end"]
    assert {d["type"] for d in debug} == {"checkpoint", "task", "task_result"}
    assert all({"type", "timestamp", "step", "payload"} == set(d) for d in debug)
    checkpoints = [d["payload"] for d in debug if d["type"] == "checkpoint"]
    assert len(checkpoints) == CHECKPOINTS
    for payload in checkpoints:
        assert CHECKPOINT_KEYS | {"checkpoint", "parent_checkpoint"} <= set(payload)
        config = payload["config"]["configurable"]
        assert payload["checkpoint"]["checkpoint_id"] == config["checkpoint_id"]
        assert payload["checkpoint"]["thread_id"] == config["thread_id"]
    assert checkpoints[0]["parent_checkpoint"] is None
    assert checkpoints[1]["parent_checkpoint"] == checkpoints[0]["checkpoint"]
    assert [d["step"] for d in debug if d["type"] == "checkpoint"] == [-1, 0, 1, 2, 3, 4]
    results = [d["payload"] for d in debug if d["type"] == "task_result"]
    assert [r["name"] for r in results] == ["plan", "chat", "inner", "answer"]


async def test_a_debug_run_commits_each_checkpoint_before_its_event(
    lg_server: Server, settings: Settings
) -> None:
    def script() -> tuple[list[str], list[str]]:
        c: Any = get_sync_client(url=lg_server.url, api_key=None, timeout=30)
        db = sqlite3.connect(settings.db)
        announced, missing = [], []
        for part in c.runs.stream(None, "streamer", input=HELLO, stream_mode=["debug", "values"]):
            if part.event == "debug" and part.data["type"] == "checkpoint":
                checkpoint_id = part.data["payload"]["checkpoint"]["checkpoint_id"]
                announced.append(checkpoint_id)
                query = "SELECT 1 FROM checkpoints WHERE checkpoint_id = ? AND checkpoint_ns = ''"
                if db.execute(query, (checkpoint_id,)).fetchone() is None:
                    missing.append(checkpoint_id)
        return announced, missing

    announced, missing = await trio.to_thread.run_sync(script)
    assert len(announced) == CHECKPOINTS
    assert missing == [], "a debug checkpoint event was visible before its checkpoint"


async def test_messages_accumulate_partials_and_a_returned_message_comes_complete(
    lg_server: Server,
) -> None:
    parts = await _stream(lg_server, ["messages"])
    names = _names(parts)
    assert set(names) == {
        "metadata",
        "messages/metadata",
        "messages/partial",
        "messages/complete",
        "end",
    }
    metadata = [p.data for p in parts if p.event == "messages/metadata"]
    streamed, returned = (next(iter(m)) for m in metadata)
    assert returned == "answer-1"
    assert metadata[0][streamed]["metadata"]["langgraph_node"] == "chat"
    partials = [p.data for p in parts if p.event == "messages/partial"]
    assert all(len(p) == 1 and p[0]["id"] == streamed for p in partials)
    contents = [p[0]["content"] for p in partials]
    assert contents == ["hello", "hello ", "hello hello", "hello hello ", "hello hello hello"]
    assert {p[0]["type"] for p in partials} == {"ai"}, "the message so far, not a chunk"
    assert names.index("messages/metadata") < names.index("messages/partial")
    complete = [p.data for p in parts if p.event == "messages/complete"]
    assert [[(m["id"], m["content"]) for m in c] for c in complete] == [
        [("answer-1", "found runyard")]
    ]
    assert names[-2] == "messages/complete"


async def test_messages_and_messages_tuple_together_send_both_shapes(lg_server: Server) -> None:
    parts = await _stream(lg_server, ["messages", "messages-tuple"])
    tuples = [p.data for p in parts if p.event == "messages"]
    partials = [p.data for p in parts if p.event == "messages/partial"]
    assert len(tuples) == len(partials) + 1  # the returned message comes complete
    assert "".join(t[0]["content"] for t in tuples[:-1]) == partials[-1][0]["content"]
    assert {t[0]["type"] for t in tuples[:-1]} == {"AIMessageChunk"}
    assert tuples[0][1]["langgraph_node"] == "chat"


async def test_events_sends_astream_events_and_leaves_every_other_mode_alone(
    lg_server: Server,
) -> None:
    modes = ["values", "updates", "custom", "messages-tuple", "messages", "checkpoints"]
    plain = await _stream(lg_server, modes)
    parts = await _stream(lg_server, [*modes, "events"])
    _assert_gapless(parts)
    events = [p.data for p in parts if p.event == "events"]
    kinds = [e["event"] for e in events]
    assert {"on_chain_start", "on_chain_end", "on_chat_model_start", "on_chat_model_stream"} <= set(
        kinds
    )
    assert {"on_chat_model_end", "on_tool_start", "on_tool_end", "on_chain_stream"} <= set(kinds)
    root = events[0]
    assert (root["event"], root["name"], root["parent_ids"]) == ("on_chain_start", "LangGraph", [])
    assert root["run_id"] == parts[0].data["run_id"], "the graph's root run is the run"
    assert (events[-1]["event"], events[-1]["run_id"]) == ("on_chain_end", root["run_id"])
    tokens = [e["data"]["chunk"]["content"] for e in events if e["event"] == "on_chat_model_stream"]
    assert "".join(tokens) == "hello hello hellodeep deep"
    root_chunks = [e for e in events if e["event"] == "on_chain_stream" and not e["parent_ids"]]
    assert root_chunks == [], "the graph's own chunks come as the modes' events"
    others = [p for p in parts if p.event != "events"]
    assert _normalized(others) == _normalized(plain)


def _normalized(parts: list[Any]) -> list[tuple[str, str]]:
    """Events without their ids and the ids inside them (message, checkpoint, run)."""
    return [(p.event, VARYING.sub("<id>", repr(p.data))) for p in parts if p.event != "metadata"]


async def test_subgraph_events_are_named_by_namespace_only_when_asked(lg_server: Server) -> None:
    modes = ["values", "updates", "custom", "messages-tuple", "messages", "debug"]
    flat = await _stream(lg_server, modes)
    nested = await _stream(lg_server, modes, stream_subgraphs=True)
    assert not any("|" in name for name in _names(flat))
    assert "deep" not in repr([p.data for p in flat if p.event == "messages"])
    inner = {name.split("|")[0] for name in _names(nested) if "|" in name}
    assert inner == {"values", "updates", "custom", "messages", "debug"}
    namespaces = {tuple(name.split("|")[1:]) for name in _names(nested) if "|" in name}
    assert len(namespaces) == 1
    (namespace,) = namespaces
    assert len(namespace) == 1
    assert namespace[0].startswith("inner:")
    assert [p.data for p in nested if p.event.startswith("custom|")] == [{"inner": "thinking"}]
    tokens = [p.data[0]["content"] for p in nested if p.event.startswith("messages|")]
    assert "".join(tokens) == "deep deep"
    deep = [p.data[0]["content"] for p in nested if p.event == "messages/partial"][-1]
    assert deep == "deep deep", "messages/* keep their names, as on the reference"
    _assert_gapless(nested)


async def test_a_join_filtered_by_mode_keeps_the_subgraph_events(lg_server: Server) -> None:
    def script() -> tuple[list[Any], list[Any]]:
        c: Any = get_sync_client(url=lg_server.url, api_key=None, timeout=30)
        run = c.runs.create(
            None,
            "streamer",
            input=HELLO,
            stream_mode=["values", "updates", "messages-tuple"],
            stream_subgraphs=True,
        )
        c.runs.join(run["thread_id"], run["run_id"])
        whole = list(c.runs.join_stream(run["thread_id"], run["run_id"]))
        values = list(c.runs.join_stream(run["thread_id"], run["run_id"], stream_mode="values"))
        return whole, values

    whole, values = await trio.to_thread.run_sync(script)
    _assert_gapless(whole)
    expected = [p for p in whole if p.event.split("|")[0] in ("metadata", "values", "end")]
    assert [(p.id, p.event) for p in values] == [(p.id, p.event) for p in expected]
    assert any(p.event.startswith("values|inner:") for p in values)
    assert _names(values).count("values") == STEPS


async def test_cancelling_a_run_that_streams_events_stops_its_graph(lg_server: Server) -> None:
    cleanups: list[str] = sys.modules["runyard_graph_streamer"].CLEANUPS
    before = len(cleanups)

    def script() -> Any:
        c: Any = get_sync_client(url=lg_server.url, api_key=None, timeout=30)
        slow = {**HELLO, "slow": 600}
        run = c.runs.create(None, "streamer", input=slow, stream_mode=["events", "custom"])
        thread_id, run_id = run["thread_id"], run["run_id"]
        for part in c.runs.join_stream(thread_id, run_id, stream_mode="custom"):
            if part.data == {"slow": "started"}:
                break  # the graph is now in its slow node
        c.runs.cancel(thread_id, run_id, wait=True)
        return c.runs.get(thread_id, run_id)

    run = await trio.to_thread.run_sync(script)
    assert (run["status"], run["cancel_reason"]) == ("interrupted", "user")
    assert cleanups[before:] == ["answer cleaned up"]


async def test_a_failed_task_reports_its_error_type_never_its_text(lg_server: Server) -> None:
    def script() -> list[Any]:
        c: Any = get_sync_client(url=lg_server.url, api_key=None, timeout=30)
        modes = ["tasks", "debug", "checkpoints", "events", "updates"]
        return list(
            c.runs.stream(None, "streamer", input={**HELLO, "fail": True}, stream_mode=modes)
        )

    parts = await trio.to_thread.run_sync(script)
    assert _names(parts)[-2:] == ["error", "end"]
    assert "hunter2" not in repr([p.data for p in parts])
    failed = [p.data for p in parts if p.event == "tasks" and p.data.get("error")]
    assert [t["error"]["error"] for t in failed] == ["ValueError"]
