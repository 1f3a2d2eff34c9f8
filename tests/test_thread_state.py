"""A thread's state and history, as LangGraph's server answers them, through
a real server and the official Python SDK (tests/lg_state_project: a chat
that answers with what it has heard, and an approval that stops at
``interrupt()``)."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytest.importorskip("langgraph", reason="the runyard[langgraph] extra is not installed")

from langgraph_sdk import get_sync_client
from langgraph_sdk.errors import ConflictError, NotFoundError, UnprocessableEntityError

from runyard.config import Settings
from runyard.server import Server, serve

from .helpers import ThreadedServer

PROJECT = Path(__file__).with_name("lg_state_project")
ALICE = "alice-token-0123456789"
BOB = "bob-token-0123456789ab"


def say(text: str) -> dict[str, Any]:
    return {"messages": [{"type": "human", "content": text}]}


@pytest.fixture
async def lg_server(settings: Settings, nursery: trio.Nursery) -> AsyncIterator[Server]:
    settings.langgraph_json = str(PROJECT / "langgraph.json")
    settings.tokens = {"alice": ALICE, "bob": BOB}
    settings.grace = 0.2
    server: Server = await nursery.start(serve, settings)
    yield server
    server.request_stop()
    await server.stopped.wait()


async def _sdk(server: Server, script: Any, token: str = ALICE) -> Any:
    return await trio.to_thread.run_sync(
        lambda: script(get_sync_client(url=server.url, api_key=None, headers=_auth(token)))
    )


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _chat_twice(c: Any) -> str:
    tid: str = c.threads.create()["thread_id"]
    c.runs.wait(tid, "chat", input=say("hello"))
    c.runs.wait(tid, "chat", input=say("again"))
    return tid


async def test_a_second_run_sees_the_first_runs_messages(lg_server: Server) -> None:
    def script(c: Any) -> Any:
        tid = c.threads.create()["thread_id"]
        c.runs.wait(tid, "chat", input=say("hello"))
        return c.runs.wait(tid, "chat", input=say("again"))

    result = await _sdk(lg_server, script)
    assert [m["content"] for m in result["messages"]] == [
        "hello", "heard: hello", "again", "heard: hello | again",
    ]  # fmt: skip


async def test_get_state_after_a_run_is_the_newest_checkpoint(lg_server: Server) -> None:
    def script(c: Any) -> tuple[str, Any, Any]:
        tid = _chat_twice(c)
        return tid, c.threads.get_state(tid), c.threads.get(tid)

    tid, state, thread = await _sdk(lg_server, script)
    assert set(state) >= {
        "values", "next", "tasks", "metadata", "created_at", "checkpoint",
        "parent_checkpoint", "interrupts",
    }  # fmt: skip
    assert state["values"] == thread["values"]
    assert state["values"]["messages"][-1]["content"] == "heard: hello | again"
    assert (state["next"], state["tasks"], state["interrupts"]) == ([], [], [])
    assert state["metadata"]["graph_id"] == "chat"
    assert state["metadata"]["source"] == "loop"
    checkpoint = state["checkpoint"]
    assert set(checkpoint) == {"thread_id", "checkpoint_ns", "checkpoint_id", "checkpoint_map"}
    assert (checkpoint["thread_id"], checkpoint["checkpoint_ns"]) == (tid, "")
    assert state["parent_checkpoint"]["checkpoint_id"] < checkpoint["checkpoint_id"]
    assert state["created_at"].endswith("+00:00")
    assert (thread["status"], thread["interrupts"]) == ("idle", {})


async def test_history_is_newest_first_and_each_entry_links_to_its_parent(
    lg_server: Server,
) -> None:
    def script(c: Any) -> tuple[Any, ...]:
        tid = _chat_twice(c)
        everything = c.threads.get_history(tid, limit=100)
        page = c.threads.get_history(tid, limit=2)
        before = c.threads.get_history(tid, limit=2, before=page[-1]["checkpoint"])
        inputs = c.threads.get_history(tid, metadata={"source": "input"})
        by_get = c.http.get(f"/threads/{tid}/history", params={"limit": 3})
        return everything, page, before, inputs, by_get, c.threads.get_history(tid)

    everything, page, before, inputs, by_get, default = await _sdk(lg_server, script)
    ids = [s["checkpoint"]["checkpoint_id"] for s in everything]
    assert ids == sorted(ids, reverse=True)
    assert len(ids) == 6  # per run: input, the step before reply, reply
    for newer, older in itertools.pairwise(everything):
        assert newer["parent_checkpoint"] == older["checkpoint"]
    assert everything[-1]["parent_checkpoint"] is None
    assert page == everything[:2]
    assert before == everything[2:4]
    assert [s["checkpoint"]["checkpoint_id"] for s in inputs] == [ids[2], ids[5]]
    assert by_get == everything[:3]
    assert default == everything[:6]  # the default limit is 10


async def test_state_at_a_checkpoint_by_id_and_by_checkpoint_object(lg_server: Server) -> None:
    def script(c: Any) -> tuple[Any, ...]:
        tid = _chat_twice(c)
        older = c.threads.get_history(tid, limit=10)[3]
        by_id = c.threads.get_state(tid, checkpoint_id=older["checkpoint"]["checkpoint_id"])
        by_object = c.threads.get_state(tid, checkpoint=older["checkpoint"])
        with pytest.raises(NotFoundError):
            c.threads.get_state(tid, checkpoint_id="1f000000-0000-6000-8000-000000000000")
        return older, by_id, by_object

    older, by_id, by_object = await _sdk(lg_server, script)
    assert by_id == older
    assert by_object == older
    assert [m["content"] for m in older["values"]["messages"]] == ["hello", "heard: hello"]


async def test_update_state_writes_a_checkpoint_and_the_thread_follows(
    lg_server: Server,
) -> None:
    def script(c: Any) -> tuple[Any, ...]:
        tid = _chat_twice(c)
        head = c.threads.get_state(tid)["checkpoint"]
        update = {"messages": [{"type": "ai", "content": "an edit", "id": "edit-1"}]}
        answer = c.threads.update_state(tid, update, as_node="reply")
        return head, answer, c.threads.get_state(tid), c.threads.get(tid)

    head, answer, state, thread = await _sdk(lg_server, script)
    assert set(answer["checkpoint"]) == {
        "thread_id", "checkpoint_ns", "checkpoint_id", "checkpoint_map",
    }  # fmt: skip
    assert answer["checkpoint"]["checkpoint_id"] > head["checkpoint_id"]
    assert state["checkpoint"] == answer["checkpoint"]
    assert state["parent_checkpoint"] == head
    assert state["metadata"]["source"] == "update"
    assert state["values"]["messages"][-1]["content"] == "an edit"
    assert thread["values"] == state["values"]
    assert thread["status"] == "idle"


async def test_as_node_copy_forks_a_checkpoint_beside_it(lg_server: Server) -> None:
    def script(c: Any) -> tuple[Any, ...]:
        tid = _chat_twice(c)
        older = c.threads.get_history(tid)[3]
        fork_at = older["checkpoint"]
        answer = c.threads.update_state(tid, None, as_node="__copy__", checkpoint=fork_at)
        fork = c.threads.get_state(tid)
        # A run from the fork continues the older conversation, not the newer one.
        result = c.runs.wait(tid, "chat", input=say("fork"), checkpoint=fork["checkpoint"])
        return older, answer, fork, result

    older, answer, fork, result = await _sdk(lg_server, script)
    assert fork["checkpoint"] == answer["checkpoint"]
    assert fork["metadata"]["source"] == "fork"
    assert fork["values"] == older["values"]
    assert fork["parent_checkpoint"] == older["parent_checkpoint"]
    assert [m["content"] for m in result["messages"]][-1] == "heard: hello | fork"


async def test_copy_makes_a_new_thread_with_every_checkpoint(lg_server: Server) -> None:
    def script(c: Any) -> tuple[Any, ...]:
        tid = _chat_twice(c)
        c.threads.update(tid, metadata={"topic": "greetings"})
        original = c.threads.get(tid)
        copy = c.threads.copy(tid)
        history = c.threads.get_history(copy["thread_id"], limit=100)
        then = c.runs.wait(copy["thread_id"], "chat", input=say("copied"))
        return original, copy, c.threads.get_history(tid, limit=100), history, then

    original, copy, source_history, history, then = await _sdk(lg_server, script)
    assert copy["thread_id"] != original["thread_id"]
    assert (copy["metadata"], copy["values"]) == (original["metadata"], original["values"])
    assert copy["status"] == "idle"
    assert len(history) == len(source_history) == 6
    for mine, theirs in zip(history, source_history, strict=True):
        assert mine["checkpoint"] == {**theirs["checkpoint"], "thread_id": copy["thread_id"]}
        assert mine["values"] == theirs["values"]
    assert then["messages"][-1]["content"] == "heard: hello | again | copied"


async def test_patch_merges_metadata_and_answers_the_thread(lg_server: Server) -> None:
    def script(c: Any) -> tuple[Any, ...]:
        tid = c.threads.create(metadata={"a": 1, "b": {"x": 1}})["thread_id"]
        patched = c.threads.update(tid, metadata={"b": {"y": 2}, "c": 3})
        minimal = c.threads.update(tid, metadata={"d": 4}, return_minimal=True)
        return patched, minimal, c.threads.get(tid)

    patched, minimal, thread = await _sdk(lg_server, script)
    assert patched["metadata"] == {"a": 1, "b": {"y": 2}, "c": 3}
    assert patched["updated_at"] >= patched["created_at"]
    assert minimal is None
    assert thread["metadata"] == {"a": 1, "b": {"y": 2}, "c": 3, "d": 4}


async def test_count_filters_as_search_does(lg_server: Server) -> None:
    def script(c: Any) -> tuple[Any, ...]:
        for color in ("red", "red", "blue"):
            c.threads.create(metadata={"color": color})
        tid = c.threads.create(metadata={"color": "green"})["thread_id"]
        c.runs.wait(tid, "approval", input={})
        return (
            c.threads.count(),
            c.threads.count(metadata={"color": "red"}),
            c.threads.count(status="interrupted"),
            c.threads.count(values={"draft": "plan A"}),
            c.threads.count(metadata={"color": "green"}, values={"draft": "other"}),
            len(c.threads.search(values={"draft": "plan A"})),
        )

    assert await _sdk(lg_server, script) == (4, 2, 1, 1, 0, 1)
    assert await _sdk(lg_server, lambda c: c.threads.count(), token=BOB) == 0


async def test_an_interrupted_thread_shows_its_interrupts_until_resumed(
    lg_server: Server,
) -> None:
    def script(c: Any) -> tuple[Any, ...]:
        tid = c.threads.create()["thread_id"]
        c.runs.wait(tid, "approval", input={})
        stopped = c.threads.get(tid), c.threads.get_state(tid), c.threads.get_history(tid)
        c.runs.wait(tid, "approval", command={"resume": "yes"})
        return *stopped, c.threads.get(tid), c.threads.get_state(tid)

    thread, state, history, resumed, after = await _sdk(lg_server, script)
    asked = {"question": "approve?", "draft": "plan A"}
    assert thread["status"] == "interrupted"
    [(task_id, [pending])] = thread["interrupts"].items()
    assert pending["value"] == asked
    assert "__interrupt__" not in thread["values"]
    assert state["next"] == ["review"]
    [task] = history[0]["tasks"]
    assert (task["id"], task["name"], task["interrupts"]) == (task_id, "review", [pending])
    assert state["tasks"] == history[0]["tasks"]
    assert state["interrupts"] == [pending]
    assert (resumed["status"], resumed["interrupts"]) == ("idle", {})
    assert after["values"] == {"draft": "plan A", "decision": "yes"}
    assert (after["next"], after["tasks"]) == ([], [])


async def test_an_update_on_a_thread_with_a_run_in_progress_is_a_conflict(
    lg_server: Server,
) -> None:
    def script(c: Any) -> None:
        tid = c.threads.create()["thread_id"]
        run = c.runs.create(tid, "chat", input={**say("slowly"), "pause": 60})
        with pytest.raises(ConflictError):
            c.threads.update_state(tid, {"pause": 0}, as_node="reply")
        c.runs.cancel(tid, run["run_id"], wait=True)
        c.threads.update_state(tid, {"pause": 0}, as_node="reply")  # quiet now

    await _sdk(lg_server, script)


async def test_a_thread_without_checkpoints_answers_its_own_values(lg_server: Server) -> None:
    async with httpx.AsyncClient(base_url=lg_server.url, headers=_auth(ALICE)) as c:
        tid = (await c.post("/threads", json={})).json()["thread_id"]
        state = (await c.get(f"/threads/{tid}/state")).json()
        assert state["values"] == {}
        assert state["checkpoint"] == {
            "thread_id": tid, "checkpoint_ns": "", "checkpoint_id": None, "checkpoint_map": {},
        }  # fmt: skip
        assert (await c.post(f"/threads/{tid}/history", json={})).json() == []
        refused = await c.post(f"/threads/{tid}/state", json={"values": {"a": 1}})
        assert refused.status_code == 400


async def test_deleting_a_thread_deletes_its_checkpoints(lg_server: Server) -> None:
    tid = await _sdk(lg_server, _chat_twice)
    async with httpx.AsyncClient(base_url=lg_server.url, headers=_auth(ALICE)) as c:
        assert len((await c.post(f"/threads/{tid}/history", json={})).json()) == 6
        assert (await c.delete(f"/threads/{tid}")).status_code == 204
        again = {"thread_id": tid, "metadata": {"graph_id": "chat"}}
        assert (await c.post("/threads", json=again)).status_code == 200
        assert (await c.post(f"/threads/{tid}/history", json={})).json() == []
        assert (await c.get(f"/threads/{tid}/state")).json()["checkpoint"]["checkpoint_id"] is None


async def test_another_owner_gets_404_everywhere(lg_server: Server) -> None:
    tid = await _sdk(lg_server, _chat_twice)
    async with httpx.AsyncClient(base_url=lg_server.url, headers=_auth(BOB)) as bob:
        probes: list[tuple[str, str, dict[str, Any]]] = [
            ("GET", f"/threads/{tid}/state", {}),
            ("GET", f"/threads/{tid}/state/some-checkpoint", {}),
            ("POST", f"/threads/{tid}/state/checkpoint", {"json": {"checkpoint": {}}}),
            ("POST", f"/threads/{tid}/state", {"json": {"values": {}}}),
            ("GET", f"/threads/{tid}/history", {}),
            ("POST", f"/threads/{tid}/history", {"json": {}}),
            ("POST", f"/threads/{tid}/copy", {}),
            ("PATCH", f"/threads/{tid}", {"json": {"metadata": {"x": 1}}}),
        ]
        for method, path, kwargs in probes:
            response = await bob.request(method, path, **kwargs)
            assert response.status_code == 404, (method, path, response.status_code)
    thread = await _sdk(lg_server, lambda c: c.threads.get(tid))
    assert "x" not in thread["metadata"]


# (method, path after /threads/{tid} or a whole path, body, the status answered)
BAD_INPUT: list[tuple[str, str, Any, int]] = [
    ("POST", "/history", {"limit": 0}, 422),
    ("POST", "/history", {"limit": "ten"}, 422),
    ("GET", "/history?limit=x", None, 422),
    ("POST", "/history", {"before": 5}, 422),
    ("POST", "/history", {"before": {}}, 422),
    ("POST", "/history", {"metadata": []}, 422),
    ("POST", "/history", {"checkpoint": "x"}, 422),
    ("GET", "/state?subgraphs=maybe", None, 422),
    ("POST", "/state/checkpoint", {}, 422),
    ("POST", "/state/checkpoint", {"checkpoint": {"checkpoint_id": 7}}, 422),
    ("POST", "/state", {"values": {}, "as_node": "nowhere"}, 422),
    ("POST", "/state", {"values": {"messages": 5}, "as_node": "reply"}, 422),
    ("POST", "/state", {"values": {}, "as_node": 3}, 422),
    ("POST", "/state", {"values": {}, "checkpoint": {"checkpoint_id": "nope"}}, 404),
    ("POST", "/state", [], 422),
    ("POST", "/state", b"{", 400),
    ("PATCH", "", {"metadata": "x"}, 422),
    ("POST", "/threads/count", {"status": "sleeping"}, 422),
    ("POST", "/threads/count", {"values": 1}, 422),
]


async def test_bad_input_is_a_clear_4xx(lg_server: Server) -> None:
    tid = await _sdk(lg_server, _chat_twice)
    async with httpx.AsyncClient(base_url=lg_server.url, headers=_auth(ALICE)) as c:
        for method, tail, body, status in BAD_INPUT:
            path = tail if tail.startswith("/threads") else f"/threads/{tid}{tail}"
            raw = body if isinstance(body, bytes) else None
            sent = None if isinstance(body, bytes) else body
            response = await c.request(method, path, json=sent, content=raw)
            assert response.status_code == status, (method, path, body, response.text)
            assert set(response.json()) == {"detail"}
        # Nothing refused left a trace: the thread is as the runs left it.
        history = (await c.post(f"/threads/{tid}/history", json={})).json()
        assert [s["metadata"]["source"] for s in history[:2]] == ["loop", "loop"]
    with pytest.raises(UnprocessableEntityError):  # the SDK raises its own error for a 422
        await _sdk(lg_server, lambda c: c.threads.get_history(tid, limit=0))


@pytest.fixture(scope="module")
def chatted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[httpx.Client, str]]:
    """A server (on its own thread, for Hypothesis) and a thread the chat graph ran on."""
    db = tmp_path_factory.mktemp("state-fuzz") / "fuzz.sqlite3"
    graphs = str(PROJECT / "langgraph.json")
    running = ThreadedServer(Settings(host="127.0.0.1", port=0, db=str(db), langgraph_json=graphs))
    try:
        with httpx.Client(base_url=running.url, timeout=30) as client:
            ran = client.post("/runs/wait", json={"assistant_id": "chat", "input": say("hi")})
            yield client, ran.headers["content-location"].split("/")[2]
    finally:
        running.close()


# (method, path after /threads/{tid}, or a whole path)
FUZZED = [
    ("POST", "/state"), ("POST", "/state/checkpoint"), ("POST", "/history"), ("PATCH", ""),
    ("POST", "/threads/count"),
]  # fmt: skip


def _state_bodies() -> st.SearchStrategy[Any]:
    scalars = st.none() | st.booleans() | st.integers() | st.text(max_size=12)
    values = st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
        max_leaves=8,
    )
    keys = st.sampled_from(
        ["values", "as_node", "checkpoint", "checkpoint_id", "limit", "before", "metadata",
         "subgraphs", "status", "checkpoint_ns", "checkpoint_map", "messages", "pause"]
    )  # fmt: skip
    named = st.sampled_from(["reply", "__copy__", "__start__", "idle", "", "1f0"])
    entry = values | named
    nested = st.dictionaries(keys, entry, max_size=4)
    return st.dictionaries(keys, entry | nested, max_size=5) | values


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=_state_bodies(), route=st.sampled_from(FUZZED))
def test_generated_state_bodies_never_cause_a_5xx(
    chatted: tuple[httpx.Client, str], body: Any, route: tuple[str, str]
) -> None:
    http, tid = chatted
    method, tail = route
    path = tail if tail.startswith("/threads") else f"/threads/{tid}{tail}"
    response = http.request(method, path, json=body)
    assert response.status_code < 500, response.text
    assert "Traceback" not in response.text


async def test_a_breakpoint_leaves_the_thread_interrupted_until_the_run_goes_on(
    lg_server: Server,
) -> None:
    def script(c: Any) -> tuple[Any, Any, Any, Any]:
        tid = c.threads.create()["thread_id"]
        c.runs.wait(tid, "chat", input=say("hold on"), interrupt_before=["reply"])
        stopped = (c.threads.get(tid), c.threads.get_state(tid))
        c.runs.wait(tid, "chat", input=None)
        return (*stopped, c.threads.get(tid), c.threads.get_state(tid))

    stopped, at_break, after, done = await _sdk(lg_server, script)
    assert (stopped["status"], stopped["interrupts"]) == ("interrupted", {})
    assert at_break["next"] == ["reply"]
    assert after["status"] == "idle"
    assert done["next"] == []
