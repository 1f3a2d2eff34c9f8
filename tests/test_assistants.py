"""The assistants API through the official async SDK, against real servers on 127.0.0.1.

Each script runs on asyncio in a worker thread (the SDK's async client is
asyncio-only) while the server runs in the test's trio loop. The graphs are
the LangGraph project in tests/lg_project and ``NESTED`` below, a graph with
a subgraph and a context schema, registered by its import path.
"""

from __future__ import annotations

import asyncio
import operator
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import httpx
import pytest
import trio

pytest.importorskip("langgraph", reason="the runyard[langgraph] extra is not installed")

from langgraph.graph import END, START, StateGraph
from langgraph_sdk import get_client
from typing_extensions import TypedDict

from runyard.assistants import Resolved
from runyard.config import Settings
from runyard.errors import NotFound
from runyard.server import Server, serve

pytestmark = pytest.mark.trio

T = TypeVar("T")
PROJECT = Path(__file__).with_name("lg_project")
ALICE = "alice-token-0123456789"
BOB = "bob-token-0123456789ab"
DEMO = {"echo", "emitter", "failing", "sleepy", "typewriter"}


class Steps(TypedDict, total=False):
    steps: Annotated[list[str], operator.add]


class Context(TypedDict):
    model: str


async def work(state: Steps) -> dict[str, Any]:
    return {"steps": ["work"]}


def _nested() -> Any:
    inner = StateGraph(Steps)
    inner.add_node("work", work)
    inner.add_edge(START, "work")
    inner.add_edge("work", END)
    outer = StateGraph(Steps, context_schema=Context)
    outer.add_node("child", inner.compile())
    outer.add_edge(START, "child")
    outer.add_edge("child", END)
    return outer.compile()


NESTED = _nested()


@pytest.fixture
async def graphs(settings: Settings, nursery: trio.Nursery) -> AsyncIterator[Server]:
    """The demo agents, tests/lg_project's ``assistant`` graph, and ``nested``."""
    settings.langgraph_json = str(PROJECT / "langgraph.json")
    settings.agents = {"nested": f"{__name__}:NESTED"}
    server: Server = await nursery.start(serve, settings)
    yield server
    server.request_stop()
    await server.stopped.wait()


@pytest.fixture
async def secured(settings: Settings, nursery: trio.Nursery) -> AsyncIterator[Server]:
    settings.tokens = {"alice": ALICE, "bob": BOB}
    server: Server = await nursery.start(serve, settings)
    yield server
    server.request_stop()
    await server.stopped.wait()


async def sdk(
    server: Server, script: Callable[[Any], Awaitable[T]], api_key: str | None = None
) -> T:
    """Run ``script(client)`` with the SDK's async client, on asyncio in a worker thread."""

    async def run() -> T:
        client = get_client(url=server.url, api_key=api_key, timeout=30)
        try:
            return await script(client)
        finally:
            await client.aclose()

    return await trio.to_thread.run_sync(lambda: asyncio.run(run()))


async def status(call: Awaitable[Any]) -> int:
    """The HTTP status a failing SDK call got (200 if it did not fail)."""
    try:
        await call
    except httpx.HTTPStatusError as exc:
        return exc.response.status_code
    return 200


async def test_updates_make_versions_and_any_version_can_become_the_latest(
    server: Server,
) -> None:
    async def script(c: Any) -> dict[str, Any]:
        made = await c.assistants.create(
            "echo", config={"tags": ["a"]}, metadata={"team": "red"}, name="first"
        )
        aid = made["assistant_id"]
        second = await c.assistants.update(aid, metadata={"stage": "two"}, name="second")
        third = await c.assistants.update(aid, context={"model": "small"})
        versions = await c.assistants.get_versions(aid)
        back = await c.assistants.set_latest(aid, 1)
        return {
            "made": made, "second": second, "third": third, "versions": versions,
            "back": back, "got": await c.assistants.get(aid),
            "after": await c.assistants.get_versions(aid),
        }  # fmt: skip

    out = await sdk(server, script)
    made, second, third = out["made"], out["second"], out["third"]
    assert (made["graph_id"], made["name"], made["version"]) == ("echo", "first", 1)
    assert made["config"] == {"tags": ["a"]}
    assert second["version"] == 2
    assert second["metadata"] == {"team": "red", "stage": "two"}, "metadata merges"
    assert (third["version"], third["name"]) == (3, "second")
    assert third["context"] == {"model": "small"}
    assert third["config"] == {"tags": ["a"], "configurable": {"model": "small"}}
    assert [v["version"] for v in out["versions"]] == [3, 2, 1]
    assert [v["name"] for v in out["versions"]] == ["second", "second", "first"]
    assert out["got"] == out["back"]
    assert (out["got"]["version"], out["got"]["name"]) == (1, "first")
    assert out["got"]["metadata"] == {"team": "red"}
    assert out["got"]["created_at"] == made["created_at"]
    assert [v["version"] for v in out["after"]] == [3, 2, 1], "choosing a version adds none"


async def test_search_and_count_filter_by_graph_name_and_metadata_and_include_the_agents(
    server: Server,
) -> None:
    async def script(c: Any) -> dict[str, Any]:
        for graph, team, name in [("echo", "red", "Alpha"), ("echo", "blue", "beta"),
                                  ("emitter", "red", "gamma")]:  # fmt: skip
            await c.assistants.create(graph, metadata={"team": team}, name=name)
        search, count = c.assistants.search, c.assistants.count
        page = await search(limit=2, response_format="object")
        return {
            "all": await search(limit=100),
            "echo": await search(graph_id="echo"),
            "red": await search(metadata={"team": "red"}),
            "named": await search(name="ALP"),
            "system": await search(metadata={"created_by": "system"}, limit=100),
            "by_name": await search(sort_by="name", sort_order="asc", limit=3),
            "page": page,
            "rest": await search(limit=100, offset=2),
            "selected": await search(graph_id="emitter", select=["assistant_id", "name"]),
            "counts": [await count(), await count(graph_id="echo"),
                       await count(metadata={"team": "red"}), await count(name="a")],
        }  # fmt: skip

    out = await sdk(server, script)
    names = [a["name"] for a in out["all"]]
    assert names[:3] == ["gamma", "beta", "Alpha"], "newest first, the agents after"
    assert set(names[3:]) == DEMO
    assert [a["name"] for a in out["echo"]] == ["beta", "Alpha", "echo"]
    assert [a["name"] for a in out["red"]] == ["gamma", "Alpha"]
    assert [a["name"] for a in out["named"]] == ["Alpha"]
    assert {a["assistant_id"] for a in out["system"]} == DEMO
    assert [a["name"] for a in out["by_name"]] == ["Alpha", "beta", "echo"]
    assert [a["name"] for a in out["page"]["assistants"]] == names[:2]
    assert out["page"]["next"] == "2"
    assert [a["name"] for a in out["rest"]] == names[2:]
    assert out["selected"] == [
        {"assistant_id": out["selected"][0]["assistant_id"], "name": "gamma"},
        {"assistant_id": "emitter", "name": "emitter"},
    ]
    assert out["counts"] == [3 + len(DEMO), 3, 2, 3 + 1]  # "a": Alpha, beta, gamma; failing


async def test_delete_removes_the_assistant_and_every_version(server: Server) -> None:
    async def script(c: Any) -> list[Any]:
        aid = (await c.assistants.create("echo"))["assistant_id"]
        await c.assistants.update(aid, name="changed")
        before = await c.assistants.count(graph_id="echo")
        await c.assistants.delete(aid)
        return [
            before,
            await c.assistants.count(graph_id="echo"),
            await status(c.assistants.get(aid)),
            await status(c.assistants.get_versions(aid)),
            await status(c.assistants.delete(aid)),
        ]

    assert await sdk(server, script) == [2, 1, 404, 404, 404]


async def test_an_agents_name_is_an_assistant_that_cannot_be_changed(server: Server) -> None:
    async def script(c: Any) -> list[Any]:
        return [
            await c.assistants.get("echo"),
            await c.assistants.get_versions("echo"),
            await c.assistants.set_latest("echo", 1),
            await status(c.assistants.set_latest("echo", 2)),
            await status(c.assistants.update("echo", name="mine")),
            await status(c.assistants.delete("echo")),
            await status(c.assistants.get("no-such-agent")),
        ]

    got, versions, latest, *statuses = await sdk(server, script)
    assert (got["assistant_id"], got["graph_id"], got["version"]) == ("echo", "echo", 1)
    assert got["metadata"]["created_by"] == "system"
    assert [v["version"] for v in versions] == [1]
    assert latest == got
    assert statuses == [404, 409, 409, 404]


async def test_if_exists_raise_refuses_a_taken_id_and_do_nothing_returns_it(
    server: Server,
) -> None:
    async def script(c: Any) -> list[Any]:
        made = await c.assistants.create("echo", name="kept")
        aid = made["assistant_id"]
        return [
            made,
            await status(c.assistants.create("emitter", assistant_id=aid)),
            await c.assistants.create("emitter", assistant_id=aid, if_exists="do_nothing"),
        ]

    made, refused, existing = await sdk(server, script)
    assert refused == 409
    assert existing == made


async def test_assistants_and_their_versions_survive_a_restart(settings: Settings) -> None:
    async def first(c: Any) -> str:
        made = await c.assistants.create("echo", metadata={"kept": True}, name="durable")
        await c.assistants.update(made["assistant_id"], name="durable, changed")
        return str(made["assistant_id"])

    async def second(aid: str, c: Any) -> list[Any]:
        return [await c.assistants.get(aid), await c.assistants.get_versions(aid)]

    async with trio.open_nursery() as lifetime:  # left once serve() has closed the store
        server: Server = await lifetime.start(serve, settings)
        aid = await sdk(server, first)
        server.request_stop()
    async with trio.open_nursery() as lifetime:
        server = await lifetime.start(serve, settings)
        got, versions = await sdk(server, lambda c: second(aid, c))
        server.request_stop()
    assert (got["name"], got["version"], got["metadata"]) == ("durable, changed", 2, {"kept": True})
    assert [v["name"] for v in versions] == ["durable, changed", "durable"]


async def test_a_graph_is_drawn_described_and_its_subgraphs_listed(graphs: Server) -> None:
    async def script(c: Any) -> dict[str, Any]:
        made = await c.assistants.create("nested", context={"model": "big"})
        return {
            "flat": await c.assistants.get_graph("nested"),
            "xray": await c.assistants.get_graph(made["assistant_id"], xray=True),
            "project": await c.assistants.get_graph("assistant"),
            "schemas": await c.assistants.get_schemas(made["assistant_id"]),
            "subgraphs": await c.assistants.get_subgraphs("nested"),
            "child": await c.assistants.get_subgraphs("nested", namespace="child"),
            "none": await c.assistants.get_subgraphs("nested", namespace="nope", recurse=True),
        }

    out = await sdk(graphs, script)
    assert [n["id"] for n in out["flat"]["nodes"]] == ["__start__", "child", "__end__"]
    assert {"source": "__start__", "target": "child"} in out["flat"]["edges"]
    assert "child:work" in [n["id"] for n in out["xray"]["nodes"]]
    assert all("id" not in n.get("data", {}) for n in out["xray"]["nodes"]), "no class paths"
    assert {"plan", "chat", "slow"} <= {n["id"] for n in out["project"]["nodes"]}
    schemas = out["schemas"]
    assert schemas["graph_id"] == "nested"
    assert schemas["input_schema"]["properties"]["steps"]["type"] == "array"
    assert schemas["state_schema"]["title"] == "Steps"
    assert schemas["context_schema"]["required"] == ["model"]
    assert schemas["config_schema"] == schemas["context_schema"]
    assert list(out["subgraphs"]) == ["child"]
    assert out["subgraphs"]["child"]["input_schema"]["properties"]["steps"]["type"] == "array"
    assert out["subgraphs"]["child"]["context_schema"] is None
    assert out["child"] == out["subgraphs"]
    assert out["none"] == {}


async def test_a_plain_agent_is_drawn_as_one_node_without_schemas(server: Server) -> None:
    async def script(c: Any) -> list[Any]:
        return [
            await c.assistants.get_graph("echo"),
            await c.assistants.get_schemas("echo"),
            await c.assistants.get_subgraphs("echo"),
        ]

    drawn, schemas, subgraphs = await sdk(server, script)
    assert [n["id"] for n in drawn["nodes"]] == ["__start__", "echo", "__end__"]
    assert drawn["edges"] == [
        {"source": "__start__", "target": "echo"},
        {"source": "echo", "target": "__end__"},
    ]
    assert schemas == {"graph_id": "echo"} | dict.fromkeys(
        ["input_schema", "output_schema", "state_schema", "config_schema", "context_schema"]
    )
    assert subgraphs == {}


async def test_another_owner_finds_nothing_of_an_assistant(secured: Server) -> None:
    async def alice(c: Any) -> str:
        made = await c.assistants.create("echo", metadata={"who": "alice"})
        return str(made["assistant_id"])

    aid = await sdk(secured, alice, api_key=ALICE)

    async def bob(c: Any) -> dict[str, Any]:
        a = c.assistants
        return {
            "statuses": [
                await status(a.get(aid)),
                await status(a.update(aid, name="bob's")),
                await status(a.delete(aid)),
                await status(a.get_versions(aid)),
                await status(a.set_latest(aid, 1)),
                await status(a.get_graph(aid)),
                await status(a.get_schemas(aid)),
                await status(a.get_subgraphs(aid)),
                await status(a.create("echo", assistant_id=aid)),
            ],
            "found": await a.search(metadata={"who": "alice"}),
            "count": await a.count(),
            "echo": await a.get("echo"),
        }

    out = await sdk(secured, bob, api_key=BOB)
    assert out["statuses"] == [404] * 8 + [409]
    assert out["found"] == []
    assert out["count"] == len(DEMO)
    assert out["echo"]["assistant_id"] == "echo"
    after = await sdk(secured, lambda c: c.assistants.get(aid), api_key=ALICE)
    assert (after["version"], after["metadata"]) == (1, {"who": "alice"})


async def test_a_run_resolves_a_created_assistant_or_an_agents_name(server: Server) -> None:
    async def script(c: Any) -> str:
        made = await c.assistants.create("echo", config={"configurable": {"k": 1}})
        return str(made["assistant_id"])

    aid = await sdk(server, script)
    assistants = server.supervisor.assistants
    assert await assistants.resolve("echo", "") == Resolved("echo", "echo", {}, {})
    resolved = await assistants.resolve(aid.upper(), "")
    assert resolved == Resolved("echo", aid, {"configurable": {"k": 1}}, {"k": 1})
    for missing, owner in [(aid, "somebody else"), ("unknown", ""), (str(uuid.UUID(int=0)), "")]:
        with pytest.raises(NotFound):
            await assistants.resolve(missing, owner)


BAD_REQUESTS: list[tuple[str, str, Any, int]] = [
    ("POST", "/assistants", {}, 422),
    ("POST", "/assistants", {"graph_id": "no-such-graph"}, 404),
    ("POST", "/assistants", {"graph_id": "echo", "assistant_id": "not-a-uuid"}, 422),
    ("POST", "/assistants", {"graph_id": "echo", "config": []}, 422),
    ("POST", "/assistants", {"graph_id": "echo", "config": {"configurable": 1}}, 422),
    ("POST", "/assistants", {"graph_id": "echo", "config": {"recursion_limit": "x"}}, 422),
    ("POST", "/assistants", {"graph_id": "echo", "if_exists": "replace"}, 422),
    ("POST", "/assistants", {"graph_id": 7}, 422),
    ("POST", "/assistants", [1, 2], 422),
    ("POST", "/assistants",
     {"graph_id": "echo", "config": {"configurable": {"a": 1}}, "context": {"b": 2}}, 400),
    ("POST", "/assistants/search", {"graph_id": "no-such-graph"}, 404),
    ("POST", "/assistants/search", {"limit": 0}, 422),
    ("POST", "/assistants/search", {"sort_by": "metadata"}, 422),
    ("POST", "/assistants/search", {"sort_order": "up"}, 422),
    ("POST", "/assistants/search", {"select": ["secret"]}, 422),
    ("POST", "/assistants/search", {"metadata": "x"}, 422),
    ("POST", "/assistants/count", {"graph_id": ""}, 404),
    ("POST", "/assistants/echo/latest", {"version": "1"}, 422),
    ("POST", "/assistants/echo/latest", {}, 422),
    ("POST", "/assistants/echo/versions", {"offset": -1}, 422),
    ("PATCH", "/assistants/00000000-0000-0000-0000-000000000000", {"name": "x"}, 404),
    ("PATCH", "/assistants/echo", {"graph_id": "no-such-graph"}, 409),
    ("GET", "/assistants/echo/graph?xray=deep", None, 422),
    ("GET", "/assistants/echo/graph?xray=0", None, 422),
    ("GET", "/assistants/echo/subgraphs?recurse=maybe", None, 422),
    ("GET", "/assistants/no-such-assistant/schemas", None, 404),
]  # fmt: skip


async def test_bad_input_gets_a_4xx_that_says_why(client: httpx.AsyncClient) -> None:
    made = (await client.post("/assistants", json={"graph_id": "echo"})).json()
    patch = f"/assistants/{made['assistant_id']}"
    cases = [
        *BAD_REQUESTS,
        ("PATCH", patch, {"graph_id": "no-such-graph"}, 404),
        ("PATCH", patch, {"metadata": [1]}, 422),
        ("POST", f"{patch}/latest", {"version": 9}, 404),
    ]
    for method, path, body, expected in cases:
        response = await client.request(method, path, json=body)
        assert (method, path, body, response.status_code) == (method, path, body, expected)
        assert response.json()["detail"]
    unchanged = (await client.get(patch)).json()
    assert unchanged == made
