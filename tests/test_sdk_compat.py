"""The official langgraph-sdk client against a real runyard on 127.0.0.1.

The SDK's sync client runs in a worker thread while the server runs in the
test's trio loop, so each test reads as a plain client script.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import httpx
import pytest
import trio
from langgraph_sdk import get_sync_client

from runyard.server import Server

pytestmark = pytest.mark.trio

T = TypeVar("T")


async def in_client(server: Server, script: Callable[[Any], T]) -> T:
    # The SDK's TypedDicts are stricter than its wire format; scripts take Any.
    def run() -> T:
        client = get_sync_client(url=server.url, api_key=None, timeout=30)
        return script(client)

    return await trio.to_thread.run_sync(run)


def parts(stream: Any) -> list[tuple[str, Any]]:
    return [(p.event, p.data) for p in stream]


async def test_stream_without_and_with_a_thread(server: Server) -> None:
    def script(c: Any) -> tuple[Any, Any, str]:
        stateless = parts(c.runs.stream(None, "emitter", input={"n": 2}, stream_mode="custom"))
        thread = c.threads.create()
        values = parts(
            c.runs.stream(thread["thread_id"], "echo", input={"a": 1}, stream_mode="values")
        )
        return stateless, values, thread["thread_id"]

    stateless, values, _ = await in_client(server, script)
    assert [e for e, _ in stateless] == ["metadata", "custom", "custom", "end"]
    assert stateless[1][1] == {"i": 0, "token": "hello"}
    assert [e for e, _ in values] == ["metadata", "values", "end"]
    assert values[1][1] == {"a": 1}


async def test_stream_reports_the_run_id_to_on_run_created(server: Server) -> None:
    def script(c: Any) -> tuple[list[Any], list[Any]]:
        created: list[Any] = []
        got = parts(
            c.runs.stream(
                None, "emitter", input={"n": 1}, stream_mode="custom", on_run_created=created.append
            )
        )
        return created, got

    created, got = await in_client(server, script)
    assert created[0]["run_id"] == got[0][1]["run_id"]


async def test_wait_returns_values_and_raises_on_error(server: Server) -> None:
    def script(c: Any) -> tuple[Any, str]:
        ok = c.runs.wait(None, "echo", input={"x": [1, 2]})
        try:
            c.runs.wait(None, "failing", input={})
        except Exception as exc:
            return ok, str(exc)
        return ok, ""

    ok, error = await in_client(server, script)
    assert ok == {"x": [1, 2]}
    assert error.startswith("DemoFailure:")
    assert "SECRET" not in error


async def test_create_join_and_join_stream_from_a_last_event_id(server: Server) -> None:
    def script(c: Any) -> tuple[Any, list[Any], list[Any]]:
        thread = c.threads.create()
        run = c.runs.create(thread["thread_id"], "emitter", input={"n": 20, "delay": 0.005})
        joined = c.runs.join(thread["thread_id"], run["run_id"])
        everything = parts(c.runs.join_stream(thread["thread_id"], run["run_id"]))
        resumed = parts(c.runs.join_stream(thread["thread_id"], run["run_id"], last_event_id="15"))
        return joined, everything, resumed

    joined, everything, resumed = await in_client(server, script)
    assert joined == {"done": 20}
    assert [e for e, _ in everything] == ["metadata"] + ["custom"] * 20 + ["values", "end"]
    assert resumed == everything[16:]


async def test_cancel_with_wait_then_list_get_delete(server: Server) -> None:
    def script(c: Any) -> dict[str, Any]:
        thread = c.threads.create()
        tid = thread["thread_id"]
        run = c.runs.create(tid, "sleepy", input={"delay": 60})
        c.runs.cancel(tid, run["run_id"], wait=True)
        got = c.runs.get(tid, run["run_id"])
        listed = c.runs.list(tid)
        c.runs.delete(tid, run["run_id"])
        try:
            c.runs.get(tid, run["run_id"])
            gone = False
        except httpx.HTTPStatusError as exc:
            gone = exc.response.status_code == 404
        return {"got": got, "listed": listed, "gone": gone}

    out = await in_client(server, script)
    assert (out["got"]["status"], out["got"]["cancel_reason"]) == ("interrupted", "user")
    assert [r["run_id"] for r in out["listed"]] == [out["got"]["run_id"]]
    assert out["gone"]


async def test_threads_create_get_search_delete_and_assistants_search(server: Server) -> None:
    def script(c: Any) -> dict[str, Any]:
        made = c.threads.create(metadata={"owner": "sdk"})
        got = c.threads.get(made["thread_id"])
        found = c.threads.search(metadata={"owner": "sdk"})
        c.threads.delete(made["thread_id"])
        after = c.threads.search(metadata={"owner": "sdk"})
        assistants = c.assistants.search()
        return {"made": made, "got": got, "found": found, "after": after, "a": assistants}

    out = await in_client(server, script)
    assert out["got"]["thread_id"] == out["made"]["thread_id"]
    assert [t["thread_id"] for t in out["found"]] == [out["made"]["thread_id"]]
    assert out["after"] == []
    names = {a["assistant_id"] for a in out["a"]}
    assert names == {"echo", "emitter", "failing", "sleepy", "typewriter"}
    assert all(a["graph_id"] == a["assistant_id"] for a in out["a"])


@pytest.mark.parametrize("strategy", ["reject", "interrupt", "rollback", "enqueue"])
async def test_multitask_strategies_seen_from_the_client(server: Server, strategy: str) -> None:
    def script(c: Any) -> dict[str, Any]:
        tid = c.threads.create()["thread_id"]
        first = c.runs.create(tid, "sleepy", input={"delay": 0.5})
        try:
            second = c.runs.create(tid, "echo", input={"n": 2}, multitask_strategy=strategy)
        except httpx.HTTPStatusError as exc:
            c.runs.cancel(tid, first["run_id"], wait=True)
            return {"refused": exc.response.status_code}
        result = c.runs.join(tid, second["run_id"])
        try:
            first_after = c.runs.get(tid, first["run_id"])
        except httpx.HTTPStatusError as exc:
            first_after = {"status": exc.response.status_code}
        return {"result": result, "first": first_after}

    out = await in_client(server, script)
    if strategy == "reject":
        assert out == {"refused": 409}
        return
    assert out["result"] == {"n": 2}
    expected = {
        "interrupt": ("interrupted", "interrupt"),
        "enqueue": ("success", None),
    }
    if strategy == "rollback":
        assert out["first"] == {"status": 404}
    else:
        assert (out["first"]["status"], out["first"]["cancel_reason"]) == expected[strategy]
