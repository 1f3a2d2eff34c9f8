"""The memory store: LangGraph's /store routes through the official SDK, and
RunyardMemory as the store of a real compiled graph under trio-asyncio."""

from __future__ import annotations

import asyncio
import operator
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypedDict

import httpx
import pytest
import trio
from langgraph_sdk import get_client

from runyard.config import Settings
from runyard.server import Server, serve
from runyard.store import SQLiteStore

pytestmark = pytest.mark.trio

ALICE = "alice-token-0123456789"
BOB = "bob-token-0123456789ab"

Script = Callable[[Any], Awaitable[Any]]


async def _sdk(server: Server, script: Script, token: str | None = None) -> Any:
    """Run ``script(client)`` with the async SDK on its own asyncio loop, in a thread."""

    async def main() -> Any:
        client = get_client(url=server.url, api_key=token)
        try:
            return await script(client)
        finally:
            await client.aclose()

    return await trio.to_thread.run_sync(asyncio.run, main())


async def test_put_get_update_and_delete_an_item(server: Server) -> None:
    ns = ["users", "u1"]

    async def script(c: Any) -> tuple[Any, ...]:
        await c.store.put_item(ns, "prefs", {"theme": "dark"})
        first = await c.store.get_item(ns, "prefs")
        await c.store.put_item(ns, "prefs", {"theme": "light", "size": 2})
        second = await c.store.get_item(ns, "prefs")
        await c.store.delete_item(ns, "prefs")
        return first, second, await c.store.get_item(ns, "prefs"), await c.store.get_item(ns, "x")

    first, second, deleted, missing = await _sdk(server, script)
    assert set(first) == {"namespace", "key", "value", "created_at", "updated_at"}
    assert (first["namespace"], first["key"], first["value"]) == (ns, "prefs", {"theme": "dark"})
    assert first["created_at"].endswith("+00:00")
    assert second["value"] == {"theme": "light", "size": 2}
    assert second["created_at"] == first["created_at"], "an update keeps the creation time"
    assert second["updated_at"] > first["updated_at"]
    assert deleted is None
    assert missing is None


async def test_search_lists_newest_first_under_a_prefix_with_filter_and_paging(
    server: Server,
) -> None:
    puts = [
        (["docs", "a"], "1", {"kind": "note", "score": 1}),
        (["docs", "a"], "2", {"kind": "todo", "score": 5}),
        (["docs", "ab"], "3", {"kind": "note", "score": 3, "tags": {"x": 1, "y": 2}}),
        (["docs", "a", "deep"], "4", {"kind": "note", "score": 4.5}),
        (["other"], "5", {"kind": "note", "score": 9}),
    ]

    async def script(c: Any) -> dict[str, Any]:
        for ns, key, value in puts:
            await c.store.put_item(ns, key, value)
        s = c.store.search_items
        return {
            "docs": await s(["docs"]),
            "a": await s(["docs", "a"]),
            "all": await s([], limit=100),
            "notes": await s(["docs"], filter={"kind": "note"}),
            "gte": await s(["docs"], filter={"score": {"$gte": 3, "$lt": 5}}),
            "nested": await s(["docs"], filter={"tags": {"x": 1}}),
            "page": await s(["docs"], filter={"kind": "note"}, limit=1, offset=1),
            "plain_page": await s(["docs"], limit=2, offset=1),
            "query": await s(["docs"], query="anything", limit=1),
        }

    found = await _sdk(server, script)

    def keys(name: str) -> list[str]:
        return [i["key"] for i in found[name]["items"]]

    assert keys("docs") == ["4", "3", "2", "1"], "newest first, prefix by whole labels"
    assert keys("a") == ["4", "2", "1"], "('docs', 'ab') is not under ('docs', 'a')"
    assert keys("all") == ["5", "4", "3", "2", "1"]
    assert keys("notes") == ["4", "3", "1"]
    assert keys("gte") == ["4", "3"]
    assert keys("nested") == ["3"]
    assert keys("page") == ["3"]
    assert keys("plain_page") == ["3", "2"]
    assert keys("query") == ["4"], "without a vector index a query lists"
    assert found["query"]["items"][0]["score"] is None
    assert found["docs"]["items"][0]["namespace"] == ["docs", "a", "deep"]


async def test_list_namespaces_with_prefix_suffix_depth_and_paging(server: Server) -> None:
    spaces = [["a", "b", "c"], ["a", "b", "d"], ["a", "x"], ["z", "b", "c"], ["z"]]

    async def script(c: Any) -> dict[str, Any]:
        for ns in spaces:
            await c.store.put_item(ns, "k", {"v": 1})
        ls = c.store.list_namespaces
        return {
            "all": await ls(),
            "prefix": await ls(prefix=["a"]),
            "suffix": await ls(suffix=["c"]),
            "wild": await ls(prefix=["*", "b"]),
            "depth": await ls(max_depth=1),
            "both": await ls(prefix=["a"], suffix=["d"]),
            "page": await ls(limit=2, offset=1),
        }

    found = {k: v["namespaces"] for k, v in (await _sdk(server, script)).items()}
    assert found["all"] == sorted(spaces)
    assert found["prefix"] == [["a", "b", "c"], ["a", "b", "d"], ["a", "x"]]
    assert found["suffix"] == [["a", "b", "c"], ["z", "b", "c"]]
    assert found["wild"] == [["a", "b", "c"], ["a", "b", "d"], ["z", "b", "c"]]
    assert found["depth"] == [["a"], ["z"]]
    assert found["both"] == [["a", "b", "d"]]
    assert found["page"] == sorted(spaces)[1:3]


async def test_one_owner_never_sees_another_owners_items(
    settings: Settings, nursery: trio.Nursery
) -> None:
    settings.tokens = {"alice": ALICE, "bob": BOB}
    server: Server = await nursery.start(serve, settings)
    ns = ["memories"]

    async def alice(c: Any) -> None:
        await c.store.put_item(ns, "secret", {"who": "alice"})

    async def bob(c: Any) -> tuple[Any, ...]:
        await c.store.put_item(ns, "mine", {"who": "bob"})
        await c.store.delete_item(ns, "secret")  # not his: nothing happens
        return (
            await c.store.get_item(ns, "secret"),
            await c.store.search_items([]),
            await c.store.list_namespaces(),
        )

    await _sdk(server, alice, ALICE)
    got, searched, spaces = await _sdk(server, bob, BOB)
    assert got is None
    assert [i["key"] for i in searched["items"]] == ["mine"]
    assert spaces == {"namespaces": [ns]}
    store = server.supervisor.store
    assert (await store.get_item("alice", ("memories",), "secret")) is not None
    assert [i.key for i in await store.search_items("alice", ())] == ["secret"]
    server.request_stop()
    await server.stopped.wait()


async def test_items_survive_a_server_restart(settings: Settings) -> None:
    async def put(c: Any) -> None:
        await c.store.put_item(["notes"], "n1", {"text": "kept"}, ttl=60)

    async def get(c: Any) -> Any:
        return await c.store.get_item(["notes"], "n1")

    for script in (put, get):
        async with trio.open_nursery() as nursery:  # exits once the database is closed
            server: Server = await nursery.start(serve, settings)
            result = await _sdk(server, script)
            server.request_stop()
    assert result["value"] == {"text": "kept"}


async def test_an_item_with_a_ttl_is_gone_once_it_expires(store: SQLiteStore) -> None:
    ns = ("cache",)
    await store.put_item("", ns, "short", {"v": 1}, ttl=0.2 / 60)  # 0.2 s
    await store.put_item("", ns, "long", {"v": 2}, ttl=60)
    first = await store.get_item("", ns, "short")
    assert first is not None
    await trio.sleep(0.3)  # the store reads wall time, which a MockClock does not move
    assert (await store.get_item("", ns, "short")) is None
    assert [i.key for i in await store.search_items("", ns)] == ["long"]
    await store.put_item("", ("gone",), "k", {}, ttl=0.1 / 60)
    await trio.sleep(0.2)
    assert await store.list_namespaces("") == [ns]
    await store.put_item("", ns, "short", {"v": 3})
    again = await store.get_item("", ns, "short")
    assert again is not None
    assert again.value == {"v": 3}
    assert again.created_at > first.created_at, "a put after expiry starts the item afresh"
    assert again.expires_at is None
    assert await store.purge_items() == 1, "only the expired item in ('gone',) is left to purge"


@pytest.mark.parametrize(
    ("method", "path", "payload", "status"),
    [
        ("PUT", "/store/items", {"namespace": ["a.b"], "key": "k", "value": {}}, 422),
        ("PUT", "/store/items", {"namespace": ["a\x1fb"], "key": "k", "value": {}}, 422),
        ("PUT", "/store/items", {"namespace": [""], "key": "k", "value": {}}, 422),
        ("PUT", "/store/items", {"namespace": [], "key": "k", "value": {}}, 422),
        ("PUT", "/store/items", {"namespace": "a", "key": "k", "value": {}}, 422),
        ("PUT", "/store/items", {"namespace": [1], "key": "k", "value": {}}, 422),
        ("PUT", "/store/items", {"namespace": ["a"], "key": "", "value": {}}, 422),
        ("PUT", "/store/items", {"namespace": ["a"], "key": "k", "value": [1]}, 422),
        ("PUT", "/store/items", {"namespace": ["a"], "key": "k"}, 422),
        ("PUT", "/store/items", {"namespace": ["a"], "key": "k", "value": {}, "ttl": 0}, 422),
        ("PUT", "/store/items", {"namespace": ["a"], "key": "k", "value": {}, "ttl": "1"}, 422),
        ("PUT", "/store/items", {"namespace": ["a"], "key": "k", "value": {}, "index": 3}, 422),
        # A lone surrogate, as JSON text (httpx cannot encode one).
        ("PUT", "/store/items", r'{"namespace": ["\ud800"], "key": "k", "value": {}}', 400),
        ("PUT", "/store/items", r'{"namespace": ["a"], "key": "k", "value": {"\ud800": 1}}', 400),
        ("PUT", "/store/items", [1], 422),
        ("DELETE", "/store/items", {"namespace": [], "key": "k"}, 422),
        ("POST", "/store/items/search", {"namespace_prefix": ["a.b"]}, 422),
        ("POST", "/store/items/search", {"filter": {"x": {"$regex": "a"}}}, 422),
        ("POST", "/store/items/search", {"filter": {"x": {"$gt": 1, "y": 2}}}, 422),
        ("POST", "/store/items/search", {"filter": [1]}, 422),
        ("POST", "/store/items/search", {"limit": 0}, 422),
        ("POST", "/store/items/search", {"offset": 10**20}, 422),
        ("POST", "/store/namespaces", {"max_depth": 0}, 422),
        ("POST", "/store/namespaces", {"suffix": ["x", 1]}, 422),
        ("GET", "/store/items?namespace=a", None, 422),
        ("GET", "/store/items?key=k", None, 422),
        ("GET", "/store/items?namespace=a..b&key=k", None, 422),
        ("GET", "/store/items?namespace=a&key=k&refresh_ttl=maybe", None, 422),
    ],
)
async def test_bad_input_is_refused_with_a_4xx_naming_the_problem(
    client: httpx.AsyncClient, method: str, path: str, payload: Any, status: int
) -> None:
    kwargs: dict[str, Any] = {} if payload is None else {"json": payload}
    if isinstance(payload, str):
        kwargs = {"content": payload, "headers": {"Content-Type": "application/json"}}
    response = await client.request(method, path, **kwargs)
    assert response.status_code == status, response.text
    assert response.json()["detail"]


async def test_a_compiled_graph_remembers_through_runyard_memory(
    store: SQLiteStore, nursery: trio.Nursery
) -> None:
    from langgraph.graph import END, START, StateGraph
    from langgraph.store.base import BaseStore

    from runyard.graph_loop import GraphLoop
    from runyard.memory import RunyardMemory

    class State(TypedDict):
        text: str
        seen: Annotated[list[str], operator.add]

    async def remember(state: State, *, store: BaseStore) -> dict[str, Any]:
        await store.aput(("memories", "u1"), "a", {"text": state["text"]}, ttl=60)
        await store.aput(("memories", "u1"), "tmp", {"text": "gone soon"})
        await store.adelete(("memories", "u1"), "tmp")
        found = await store.asearch(("memories",), filter={"text": state["text"]})
        return {"seen": [item.key for item in found]}

    def note(state: State, *, store: BaseStore) -> dict[str, Any]:
        # A synchronous node: LangGraph runs it in a worker thread, so batch() is used.
        store.put(("memories", "u1"), "b", {"text": "from a sync node"})
        item = store.get(("memories", "u1"), "a")
        assert item is not None
        return {"seen": [item.value["text"], *map(str, store.list_namespaces())]}

    builder = StateGraph(State)
    builder.add_node("remember", remember)
    builder.add_node("note", note)
    builder.add_edge(START, "remember")
    builder.add_edge("remember", "note")
    builder.add_edge("note", END)
    loop = GraphLoop()
    await nursery.start(loop.serve)
    memory = RunyardMemory(store, loop, "alice")
    graph = builder.compile().copy(update={"store": memory})

    result = await loop.run(graph.ainvoke, {"text": "hi", "seen": []})

    assert result["seen"] == ["a", "hi", "('memories', 'u1')"]
    rows = await store.search_items("alice", ("memories", "u1"))
    assert {i.key: i.value for i in rows} == {
        "a": {"text": "hi"},
        "b": {"text": "from a sync node"},
    }
    assert rows[-1].expires_at is not None, "the ttl (minutes) became an expiry time"
    assert await store.search_items("", ()) == [], "another owner's memory is empty"
    with pytest.raises(RuntimeError, match="use the async methods"):
        memory.put(("memories",), "c", {})  # blocking, on the event loop's thread
