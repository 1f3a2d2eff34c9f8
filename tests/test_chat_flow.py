"""The chat front end's calls (LANGGRAPH.md, agent-chat-ui), against a real
runyard serving ``examples/chat``: once with the JS SDK agent-chat-ui pins
(``tests/js/chat_flow.mjs``, run by node) and once with the Python SDK
(``python_flow`` below, the same sequence). Each flow runs once per module and
reports what it saw; every test asserts one behaviour, for both SDKs.

The expected values are what ``langgraph dev`` (langgraph-api 0.16.7)
answers to the same sequence, except where runyard promises more: integer
event ids, ``Last-Event-ID: -1`` and ``GET /runs/{run_id}/stream``.

The JS half needs node and npm (``npm ci --prefix tests/js`` runs when
``node_modules`` is missing): skipped, with the reason, where they are
missing, and a failure on CI (``CI=true``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest

pytest.importorskip("langgraph", reason="the runyard[langgraph] extra is not installed")

from langgraph_sdk import get_client

from runyard.config import Settings

from .helpers import ThreadedServer

ROOT = Path(__file__).resolve().parent.parent
CHAT = ROOT / "examples" / "chat" / "langgraph.json"
JS = Path(__file__).with_name("js")
ON_CI = os.environ.get("CI") == "true"
FLOW_TIMEOUT = 120  # seconds for one whole flow; each takes a few seconds

GRAPH = "chat"
# What agent-chat-ui sends with every turn (useStream with its options).
STREAM: dict[str, Any] = {
    "stream_mode": ["values", "messages-tuple", "custom"],
    "stream_subgraphs": True,
    "stream_resumable": True,
    "on_disconnect": "continue",
}
SLOW = {"configurable": {"token_delay": 0.05}}  # long enough to leave a run mid-way
EVENTS_BEFORE_LEAVING = 6

FIRST, SECOND, EDITED = "hi, I am Ada", "what did I say first?", "what is my name?"
APPROVE, DECISION = "please approve the deploy", "yes, ship it"
SLOW_ASK, THREADLESS_ASK = "tell me slowly what I said first", "a run without a thread, slowly"


def reply(last: str, seen: int, humans: int, first: str = FIRST) -> str:
    """What examples/chat answers (its ``reply_to``)."""
    return f"You said: {last} | I see {seen} messages, {humans} from you; the first was: {first}"


# The flows ------------------------------------------------------------------


@pytest.fixture(scope="module")
def chat_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    db = tmp_path_factory.mktemp("chat") / "runyard.sqlite3"
    settings = Settings(host="127.0.0.1", port=0, db=str(db), grace=0.2, langgraph_json=str(CHAT))
    running = ThreadedServer(settings)
    try:
        yield running.url
    finally:
        running.close()


def _missing(what: str) -> NoReturn:
    if ON_CI:
        pytest.fail(f"{what} (required on CI)")
    pytest.skip(what)


def _node() -> str:
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        _missing("node and npm are needed for the JS SDK flow (node 20, npm)")
    if not (JS / "node_modules" / "@langchain" / "langgraph-sdk").is_dir():
        done = subprocess.run(
            [npm, "ci", "--prefix", str(JS), "--no-audit", "--no-fund"],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if done.returncode != 0:
            _missing(f"npm ci --prefix tests/js failed: {done.stderr[-1000:]}")
    return node


@pytest.fixture(scope="module")
def js_observations(chat_url: str) -> dict[str, Any]:
    node = _node()
    try:
        done = subprocess.run(
            [node, str(JS / "chat_flow.mjs"), chat_url],
            capture_output=True,
            text=True,
            timeout=FLOW_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        steps = exc.stderr.decode() if isinstance(exc.stderr, bytes) else str(exc.stderr)
        pytest.fail(f"chat_flow.mjs took over {FLOW_TIMEOUT} s; its last steps:\n{steps[-2000:]}")
    assert done.returncode == 0, done.stderr[-3000:]
    observed: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return observed


@pytest.fixture(scope="module")
def python_observations(chat_url: str) -> dict[str, Any]:
    return asyncio.run(asyncio.wait_for(python_flow(chat_url), FLOW_TIMEOUT))


@pytest.fixture(params=["js", "python"])
def obs(request: pytest.FixtureRequest) -> dict[str, Any]:
    observed: dict[str, Any] = request.getfixturevalue(f"{request.param}_observations")
    return observed


# The Python SDK flow: chat_flow.mjs's sequence and observations ---------------


async def _attempt(step: Awaitable[Any]) -> Any:
    try:
        return await step
    except Exception as exc:  # recorded: one missing feature must not hide the others
        return {"failed": f"{type(exc).__name__}: {exc}"[:500]}


def _text(message: Any) -> str:
    content = message.get("content") if isinstance(message, dict) else None
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(b if isinstance(b, str) else str(b.get("text", "")) for b in content)
    return ""


def _human(words: str) -> dict[str, Any]:
    return {"id": str(uuid.uuid4()), "type": "human", "content": [{"type": "text", "text": words}]}


def _history(history: Any) -> Any:
    if not isinstance(history, list):
        return history
    out = []
    for s in history:
        values = s.get("values") or {}
        messages = (values.get("messages") or []) if isinstance(values, dict) else []
        out.append(
            {
                "checkpoint_id": (s.get("checkpoint") or {}).get("checkpoint_id"),
                "parent_id": (s.get("parent_checkpoint") or {}).get("checkpoint_id"),
                "next": s.get("next"),
                "messages": [_text(m) for m in messages],
                "message_ids": [m.get("id") for m in messages],
                "tasks": [
                    {
                        "id": t.get("id"),
                        "name": t.get("name"),
                        "interrupts": t.get("interrupts") or [],
                    }
                    for t in s.get("tasks") or []
                ],
                "interrupts": s.get("interrupts"),
                "has_interrupt_value": isinstance(values, dict) and "__interrupt__" in values,
                "created_at": s.get("created_at"),
            }
        )
    return out


def _thread(thread: Any) -> Any:
    if "failed" in thread:
        return thread
    values = thread.get("values") or {}
    messages = (values.get("messages") or []) if isinstance(values, dict) else []
    return {
        "thread_id": thread["thread_id"],
        "status": thread.get("status"),
        "interrupts": thread.get("interrupts"),
        "metadata": thread.get("metadata") or {},
        "values_keys": list(values) if isinstance(values, dict) else [],
        "first_message": _text(messages[0]) if messages else "",
        "messages": [_text(m) for m in messages],
    }


def _parts(parts: list[Any]) -> dict[str, Any]:
    values = [p.data for p in parts if p.event == "values"]
    last = values[-1] if values and isinstance(values[-1], dict) else {}
    return {
        "events": [p.event for p in parts],
        "ids": [p.id for p in parts],
        "tokens": "".join(
            p.data[0].get("content", "") if isinstance(p.data[0].get("content"), str) else ""
            for p in parts
            if p.event == "messages" and isinstance(p.data, list)
        ),
        "custom": [p.data for p in parts if p.event == "custom"],
        "errors": [p.data for p in parts if p.event == "error"],
        "last_values_messages": [_text(m) for m in last.get("messages") or []],
        "last_values_interrupt": last.get("__interrupt__"),
    }


class _ChatSession:
    """One thread as the front end keeps it: history after every run, the head
    checkpoint sent with each turn, a message's parent checkpoint to fork from."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.thread_id: str | None = None
        self.history: list[dict[str, Any]] = []

    def head(self) -> dict[str, Any] | None:
        if not self.history:
            return None
        head: dict[str, Any] = self.history[0]["checkpoint"]
        return head

    def parent_of(self, message_id: str | None) -> dict[str, Any] | None:
        """The parent checkpoint of the oldest state holding the message (firstSeenState)."""
        for state in reversed(self.history):
            ids = [m.get("id") for m in (state.get("values") or {}).get("messages") or []]
            if message_id in ids:
                parent: dict[str, Any] | None = state.get("parent_checkpoint")
                return parent
        return None

    async def refetch(self) -> list[dict[str, Any]]:
        self.history = await self.client.threads.get_history(self.thread_id, limit=10)
        return self.history

    async def submit(
        self,
        values: Any,
        *,
        checkpoint: dict[str, Any] | None = None,
        command: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        chosen = checkpoint if checkpoint is not None else self.head()
        sent = {k: v for k, v in chosen.items() if k != "thread_id"} if chosen else None
        if self.thread_id is None:
            self.thread_id = (await self.client.threads.create(metadata={}))["thread_id"]
        parts: list[Any] = []
        run: dict[str, str] = {}
        stream_error = None
        try:
            async for part in self.client.runs.stream(
                self.thread_id,
                GRAPH,
                input=values,
                command=command,
                checkpoint=sent,
                on_run_created=lambda meta: run.update(run_id=meta["run_id"]),
                **STREAM,
            ):
                parts.append(part)
        except Exception as exc:
            stream_error = f"{type(exc).__name__}: {exc}"[:500]
        history = await _attempt(self.refetch())
        thread = await _attempt(self.client.threads.get(self.thread_id))
        return {
            "run_id": run.get("run_id"),
            "sent_checkpoint": sent,
            "stream_error": stream_error,
            **_parts(parts),
            "history": _history(history),
            "thread": _thread(thread),
        }


async def _leave_and_rejoin(
    client: Any,
    thread_id: str | None,
    start: Callable[[Callable[[Any], None]], AsyncIterator[Any]],
) -> dict[str, Any]:
    """Leave a slow run after a few events, rejoin it from the last id seen,
    then replay it from ``-1`` and join it (as chat_flow.mjs does)."""
    run: dict[str, str] = {}
    first: list[Any] = []
    stream: Any = start(lambda meta: run.update(run_id=meta["run_id"]))
    async with contextlib.aclosing(stream):
        async for part in stream:
            first.append(part)
            if part.event == "metadata":
                run.setdefault("run_id", part.data.get("run_id"))
            if len(first) >= EVENTS_BEFORE_LEAVING:
                break
    run_id, last_event_id = run.get("run_id"), first[-1].id if first else None

    def join_stream(after: str | None) -> AsyncIterator[Any]:
        if thread_id is not None:
            stream: AsyncIterator[Any] = client.runs.join_stream(
                thread_id, run_id, last_event_id=after
            )
            return stream
        # The Python SDK joins by thread only; the JS SDK uses this route.
        headers = {"Last-Event-ID": after} if after else None
        threadless: AsyncIterator[Any] = client.http.stream(
            f"/runs/{run_id}/stream", "GET", headers=headers
        )
        return threadless

    async def collect(after: str | None, into: list[Any]) -> None:
        async for part in join_stream(after):
            into.append(part)

    rest: list[Any] = []
    replay: list[Any] = []
    rejoined = await _attempt(collect(last_event_id, rest))
    replayed = await _attempt(collect("-1", replay))
    got = None if thread_id is None else await _attempt(client.runs.get(thread_id, run_id))
    joined = None if thread_id is None else await _attempt(client.runs.join(thread_id, run_id))
    return {
        "run_id": run_id,
        "last_event_id": last_event_id,
        "first": _parts(first),
        "rest": _parts(rest),
        "rest_error": (rejoined or {}).get("failed"),
        "replay": _parts(replay),
        "replay_error": (replayed or {}).get("failed"),
        "run_status": got if got is None or "failed" in got else got.get("status"),
        "joined": joined
        if joined is None or "failed" in joined
        else {"messages": [_text(m) for m in joined.get("messages") or []]},
    }


async def python_flow(url: str) -> dict[str, Any]:
    client: Any = get_client(url=url, api_key=None, timeout=30)
    obs: dict[str, Any] = {}

    async def info_ok() -> bool:
        response = await client.http.client.get("/info")
        return bool(response.status_code == 200)

    async def sidebar() -> list[Any]:
        found = await client.threads.search(metadata={"graph_id": GRAPH}, limit=100, offset=0)
        return [_thread(t) for t in found]

    obs["info_ok"] = await _attempt(info_ok())
    obs["sidebar_before"] = await _attempt(sidebar())

    chat = _ChatSession(client)
    second = _human(SECOND)
    obs["first"] = await _attempt(chat.submit({"messages": [_human(FIRST)]}))
    obs["thread_id"] = chat.thread_id
    obs["second"] = await _attempt(chat.submit({"messages": [second]}))

    async def state() -> Any:
        return _history([await client.threads.get_state(chat.thread_id)])[0]

    obs["state_after_second"] = await _attempt(state())

    async def edit() -> dict[str, Any]:
        parent = chat.parent_of(second["id"])
        turn = await chat.submit(
            {"messages": [{"type": "human", "content": EDITED}]}, checkpoint=parent
        )
        head = chat.head() or {}
        return {
            "fork_from": (parent or {}).get("checkpoint_id"),
            **turn,
            "head_after": head.get("checkpoint_id"),
        }

    obs["edit"] = await _attempt(edit())

    async def regenerate() -> dict[str, Any]:
        head = chat.history[0] if chat.history else {}
        messages = (head.get("values") or {}).get("messages") or [{}]
        answer_id = messages[-1].get("id")
        parent = chat.parent_of(answer_id)
        turn = await chat.submit(None, checkpoint=parent)
        return {
            "fork_from": (parent or {}).get("checkpoint_id"),
            "old_answer_id": answer_id,
            **turn,
        }

    obs["regenerate"] = await _attempt(regenerate())
    obs["approve"] = await _attempt(chat.submit({"messages": [_human(APPROVE)]}))
    obs["state_interrupted"] = await _attempt(state())
    approve_run = (obs["approve"] or {}).get("run_id")
    obs["join_interrupted"] = await _attempt(client.runs.join(chat.thread_id, approve_run))
    obs["goto_end"] = await _attempt(chat.submit({}, command={"goto": "__end__"}))
    obs["resume"] = await _attempt(chat.submit({}, command={"resume": DECISION}))

    def on_thread(created: Callable[[Any], None]) -> AsyncIterator[Any]:
        head = chat.head() or {}
        stream: AsyncIterator[Any] = client.runs.stream(
            chat.thread_id,
            GRAPH,
            input={"messages": [_human(SLOW_ASK)]},
            config=SLOW,
            checkpoint={k: v for k, v in head.items() if k != "thread_id"} or None,
            on_run_created=created,
            **STREAM,
        )
        return stream

    def threadless(created: Callable[[Any], None]) -> AsyncIterator[Any]:
        stream: AsyncIterator[Any] = client.runs.stream(
            None,
            GRAPH,
            input={"messages": [_human(THREADLESS_ASK)]},
            config=SLOW,
            on_run_created=created,
            **STREAM,
        )
        return stream

    obs["rejoin"] = await _attempt(_leave_and_rejoin(client, chat.thread_id, on_thread))
    await _attempt(chat.refetch())
    obs["rejoin_threadless"] = await _attempt(_leave_and_rejoin(client, None, threadless))

    async def history_final() -> Any:
        return _history(await client.threads.get_history(chat.thread_id, limit=10))

    async def thread_final() -> Any:
        return _thread(await client.threads.get(chat.thread_id))

    obs["history_final"] = await _attempt(history_final())
    obs["thread_final"] = await _attempt(thread_final())
    obs["sidebar_after"] = await _attempt(sidebar())
    return obs


# What both flows must have seen -----------------------------------------------


def step(obs: dict[str, Any], name: str) -> Any:
    """One observation, failing with what the server answered if the step raised."""
    value = obs[name]
    if isinstance(value, dict) and "failed" in value:
        pytest.fail(f"{name}: {value['failed']}")
    return value


def history_of(turn: dict[str, Any], name: str = "history") -> list[dict[str, Any]]:
    history = turn[name]
    if isinstance(history, dict) and "failed" in history:
        pytest.fail(f"history: {history['failed']}")
    assert isinstance(history, list)
    assert history, "a thread with runs has checkpoints in its history"
    return history


def thread_of(turn: dict[str, Any]) -> dict[str, Any]:
    thread: dict[str, Any] = turn["thread"]
    if "failed" in thread:
        pytest.fail(f"thread: {thread['failed']}")
    return thread


def children(history: list[dict[str, Any]], checkpoint_id: str) -> list[str]:
    return [s["checkpoint_id"] for s in history if s["parent_id"] == checkpoint_id]


def ancestors(history: list[dict[str, Any]], checkpoint_id: str) -> list[str]:
    """``checkpoint_id`` and its parents, as far as ``history`` reaches."""
    parents = {s["checkpoint_id"]: s["parent_id"] for s in history}
    chain = [checkpoint_id]
    while parents.get(chain[-1]) is not None:
        chain.append(parents[chain[-1]])
    return chain


def first_seen_parent(history: list[dict[str, Any]], text: str) -> str | None:
    """The parent of the oldest state whose messages hold ``text``."""
    for state in reversed(history):
        if text in state["messages"]:
            parent: str | None = state["parent_id"]
            return parent
    return None


def sent_checkpoint_id(turn: dict[str, Any]) -> str:
    """The checkpoint a turn sent: the one the client was given, without ``thread_id``."""
    sent = turn["sent_checkpoint"]
    assert sent is not None, "a turn after the first sends a checkpoint"
    assert "thread_id" not in sent
    assert sent.get("checkpoint_ns") == ""
    checkpoint_id: str = sent["checkpoint_id"]
    return checkpoint_id


def pending(thread: dict[str, Any]) -> list[Any]:
    interrupts = thread["interrupts"] or {}
    return [i for found in interrupts.values() for i in found]


def test_the_server_answers_info(obs: dict[str, Any]) -> None:
    assert step(obs, "info_ok") is True


def test_a_turn_streams_tokens_values_and_custom_events(obs: dict[str, Any]) -> None:
    first = step(obs, "first")
    answer = reply(FIRST, 1, 1)
    assert first["stream_error"] is None
    assert first["events"][0] == "metadata"
    assert first["errors"] == []
    assert first["tokens"] == answer, "messages-tuple chunks spell the answer"
    assert first["last_values_messages"] == [FIRST, answer]
    assert first["custom"] == [{"status": "answering", "seen": 1}]
    assert first["sent_checkpoint"] is None, "a thread's first turn sends no checkpoint"


def test_the_second_turn_keeps_the_first_turns_context(obs: dict[str, Any]) -> None:
    second = step(obs, "second")
    answer = reply(SECOND, 3, 2)
    assert second["tokens"] == answer, "the graph saw the first turn; only the new message was sent"
    assert second["last_values_messages"] == [FIRST, reply(FIRST, 1, 1), SECOND, answer]
    assert thread_of(second)["messages"] == second["last_values_messages"]


def test_later_turns_send_the_head_checkpoint(obs: dict[str, Any]) -> None:
    first, second = step(obs, "first"), step(obs, "second")
    head = history_of(first)[0]["checkpoint_id"]
    assert head, "history entries carry a checkpoint"
    assert sent_checkpoint_id(second) == head
    approve = step(obs, "approve")
    latest = history_of(step(obs, "regenerate"))[0]["checkpoint_id"]
    assert sent_checkpoint_id(approve) == latest


def test_history_is_newest_first_and_chained_by_parents(obs: dict[str, Any]) -> None:
    first, second = step(obs, "first"), step(obs, "second")
    for turn in (first, second):
        history = history_of(turn)
        assert history[0]["messages"] == turn["last_values_messages"]
        assert history[0]["next"] == []
        ids = [s["checkpoint_id"] for s in history]
        assert ids == sorted(ids, reverse=True), "newest first; ids sort by time"
        assert [s["parent_id"] for s in history[:-1]] == ids[1:], "one branch, chained"
        stamps = [s["created_at"] for s in history]
        assert stamps == sorted(stamps, reverse=True)
    assert len(history_of(second)) > len(history_of(first))
    final = step(obs, "history_final")
    assert isinstance(final, list)
    assert len(final) == 10, "limit 10 is honoured on a thread with more checkpoints"
    final_ids = [s["checkpoint_id"] for s in final]
    assert final_ids == sorted(final_ids, reverse=True)


def test_thread_state_is_the_head_of_history(obs: dict[str, Any]) -> None:
    state = step(obs, "state_after_second")
    head = history_of(step(obs, "second"))[0]
    assert state["checkpoint_id"] == head["checkpoint_id"]
    assert state["messages"] == head["messages"]
    assert state["next"] == []


def test_editing_a_message_forks_from_its_parent_checkpoint(obs: dict[str, Any]) -> None:
    second, edit = step(obs, "second"), step(obs, "edit")
    fork = first_seen_parent(history_of(second), SECOND)
    assert fork is not None, "the edited message's first state has a parent"
    assert edit["fork_from"] == fork
    assert sent_checkpoint_id(edit) == fork
    answer = reply(EDITED, 3, 2)
    assert edit["tokens"] == answer, "the edit replaced the second message, not added to it"
    assert edit["last_values_messages"] == [FIRST, reply(FIRST, 1, 1), EDITED, answer]
    history = history_of(edit)
    assert history[0]["messages"] == edit["last_values_messages"]
    assert edit["head_after"] == history[0]["checkpoint_id"], "the new branch is the head"
    old_head = history_of(second)[0]["checkpoint_id"]
    assert old_head in [s["checkpoint_id"] for s in history], "the old branch is kept"
    assert fork in ancestors(history, history[0]["checkpoint_id"])
    assert fork in ancestors(history, old_head)
    assert len(children(history, fork)) == 2, "two branches leave the fork point"


def test_regenerating_reruns_the_answer_from_its_parent_checkpoint(obs: dict[str, Any]) -> None:
    edit, regenerate = step(obs, "edit"), step(obs, "regenerate")
    history_before = history_of(edit)
    fork = first_seen_parent(history_before, reply(EDITED, 3, 2))
    assert fork is not None
    assert regenerate["fork_from"] == fork
    assert sent_checkpoint_id(regenerate) == fork
    assert regenerate["tokens"] == reply(EDITED, 3, 2)
    history = history_of(regenerate)
    assert fork in ancestors(history, history[0]["checkpoint_id"]), "the head is a new branch"
    assert history[0]["message_ids"][-1] != regenerate["old_answer_id"], "a new answer"
    assert len(children(history, fork)) == 2


def test_an_interrupt_leaves_the_thread_interrupted_with_its_interrupts(
    obs: dict[str, Any],
) -> None:
    approve = step(obs, "approve")
    question = {"question": "Approve this request?", "request": APPROVE}
    assert approve["tokens"].startswith(f"You said: {APPROVE} |")
    assert [i["value"] for i in approve["last_values_interrupt"] or []] == [question], (
        "the stream's last values carry __interrupt__"
    )
    thread = thread_of(approve)
    assert thread["status"] == "interrupted"
    assert [i["value"] for i in pending(thread)] == [question]
    assert "__interrupt__" not in thread["values_keys"]
    head = history_of(approve)[0]
    assert head["next"] == ["approval"]
    assert [i["value"] for i in head["tasks"][0]["interrupts"]] == [question]
    assert list(thread["interrupts"]) == [head["tasks"][0]["id"]], "keyed by task id"
    assert pending(thread)[0]["id"] == head["tasks"][0]["interrupts"][0]["id"]
    assert not head["has_interrupt_value"]
    state = step(obs, "state_interrupted")
    assert state["checkpoint_id"] == head["checkpoint_id"]
    assert state["next"] == ["approval"]


def test_joining_an_interrupted_run_answers_its_interrupt(obs: dict[str, Any]) -> None:
    joined = step(obs, "join_interrupted")
    question = {"question": "Approve this request?", "request": APPROVE}
    assert [i["value"] for i in joined.get("__interrupt__") or []] == [question]


def test_goto_end_leaves_the_interrupt_pending_as_langgraph_does(obs: dict[str, Any]) -> None:
    # LangGraph ignores a goto to END and runs the pending task again, which
    # asks again: langgraph dev answers the same (agent-chat-ui's "resolve").
    approve, goto_end = step(obs, "approve"), step(obs, "goto_end")
    assert goto_end["stream_error"] is None
    assert goto_end["last_values_messages"] == approve["last_values_messages"], "no new turn"
    thread = thread_of(goto_end)
    assert thread["status"] == "interrupted"
    assert [i["value"]["request"] for i in pending(thread)] == [APPROVE]
    assert history_of(goto_end)[0]["next"] == ["approval"]


def test_resuming_with_a_value_answers_and_the_thread_goes_idle(obs: dict[str, Any]) -> None:
    approve, resume = step(obs, "approve"), step(obs, "resume")
    decision = f"Decision on '{APPROVE}': {DECISION}"
    assert resume["stream_error"] is None
    assert resume["last_values_messages"][-1:] == [decision], "interrupt() returned the value"
    assert resume["last_values_messages"] == [*approve["last_values_messages"], decision]
    assert resume["last_values_interrupt"] is None
    thread = thread_of(resume)
    assert (thread["status"], pending(thread)) == ("idle", [])
    head = history_of(resume)[0]
    assert (head["next"], head["tasks"]) == ([], [])


def test_a_run_left_mid_way_is_rejoined_by_last_event_id_without_duplicate_or_gap(
    obs: dict[str, Any],
) -> None:
    rejoin = step(obs, "rejoin")
    assert rejoin["rest_error"] is None
    first, rest = rejoin["first"], rejoin["rest"]
    assert len(first["ids"]) == EVENTS_BEFORE_LEAVING
    assert rejoin["last_event_id"] == first["ids"][-1]
    assert rest["ids"], "the run was still going when it was left"
    ids = first["ids"] + rest["ids"]
    assert len(set(ids)) == len(ids), "no event twice"
    answer = (rest["last_values_messages"] or [""])[-1]
    assert answer.startswith(f"You said: {SLOW_ASK} |"), "the rejoined stream reached the end"
    assert first["tokens"] + rest["tokens"] == answer, "no token missed"


def test_a_reload_replays_a_finished_run_from_last_event_id_minus_one(
    obs: dict[str, Any],
) -> None:
    rejoin = step(obs, "rejoin")
    assert rejoin["replay_error"] is None
    assert rejoin["replay"]["ids"] == rejoin["first"]["ids"] + rejoin["rest"]["ids"]
    assert rejoin["replay"]["tokens"] == rejoin["first"]["tokens"] + rejoin["rest"]["tokens"]


def test_join_answers_the_final_values_of_a_finished_run(obs: dict[str, Any]) -> None:
    rejoin = step(obs, "rejoin")
    answer = (rejoin["rest"]["last_values_messages"] or [""])[-1]
    assert answer.startswith(f"You said: {SLOW_ASK} |")
    assert rejoin["run_status"] == "success"
    assert rejoin["joined"]["messages"][-1] == answer
    assert step(obs, "thread_final")["messages"][-1] == answer


def test_a_threadless_run_is_rejoined_at_runs_run_id_stream(obs: dict[str, Any]) -> None:
    rejoin = step(obs, "rejoin_threadless")
    answer = reply(THREADLESS_ASK, 1, 1, first=THREADLESS_ASK)
    assert rejoin["rest_error"] is None
    ids = rejoin["first"]["ids"] + rejoin["rest"]["ids"]
    assert len(set(ids)) == len(ids)
    assert rejoin["first"]["tokens"] + rejoin["rest"]["tokens"] == answer
    assert rejoin["replay_error"] is None
    assert rejoin["replay"]["ids"] == ids


def test_runs_put_graph_id_and_assistant_id_in_the_thread_metadata(obs: dict[str, Any]) -> None:
    metadata = thread_of(step(obs, "first"))["metadata"]
    assert metadata.get("graph_id") == GRAPH
    assert metadata.get("assistant_id"), "the assistant the run used"


def test_the_sidebar_finds_the_thread_by_graph_id(obs: dict[str, Any]) -> None:
    before, after = step(obs, "sidebar_before"), step(obs, "sidebar_after")
    thread_id = obs["thread_id"]
    assert thread_id not in [t["thread_id"] for t in before]
    found = [t for t in after if t["thread_id"] == thread_id]
    assert len(found) == 1
    assert found[0]["first_message"] == FIRST, "the sidebar shows values.messages[0]"
    assert found[0]["metadata"].get("graph_id") == GRAPH
