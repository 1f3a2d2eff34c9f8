"""The dashboard in a real headless browser (Debian's chromium, driven by Playwright).

Skipped, with the reason, where chromium or playwright is missing; on CI
(``CI=true``) a missing part fails instead: ``./scripts/test`` installs
chromium there, the ``test`` extra playwright. The interrupt test serves
``examples/chat`` and needs the ``runyard[langgraph]`` extra.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from runyard import RunContext, agent
from runyard.config import Settings
from runyard.model import JSON
from runyard.server import Server, serve

CHAT = Path(__file__).resolve().parent.parent / "examples" / "chat" / "langgraph.json"
# Modes beyond the dashboard's old list of seven event names.
GRAPH_MODES = ["values", "updates", "debug", "tasks", "checkpoints"]

# What the run details show for a field the run does not have (an en dash).
NOTHING = "\u2013"

CHROMIUM = os.environ.get("RUNYARD_CHROMIUM", "/usr/bin/chromium")


def require(module: str, why: str) -> None:
    """Skip without ``module`` (or chromium); on CI, where nothing may be missing, fail."""
    missing = None
    if shutil.which(CHROMIUM) is None:
        missing = f"no chromium at {CHROMIUM} (apt-get install chromium)"
    elif importlib.util.find_spec(module) is None:
        missing = f"{module} is not installed ({why})"
    if missing is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"{missing}: CI must run the browser tests", pytrace=False)
    pytest.skip(missing)


@pytest.fixture
def browser() -> None:
    """Chromium and Playwright, or a skip (a failure on CI), before any server starts."""
    require("playwright", "the test extra")


pytestmark = [pytest.mark.trio, pytest.mark.usefixtures("browser")]


@agent(description="Emits events it names itself, as agents may.")
async def herald(input: JSON, ctx: RunContext) -> JSON:
    await ctx.emit("review/step", {"step": 1})
    await ctx.emit("progress", {"done": 0.5})
    return {"heralded": 2}


@pytest.fixture
async def chat_server(settings: Settings, nursery: trio.Nursery) -> AsyncIterator[Server]:
    """examples/chat, the demo agents and :func:`herald`."""
    require("langgraph", "the runyard[langgraph] extra")
    settings.langgraph_json = str(CHAT)
    settings.agents = {"herald": f"{__name__}:herald"}
    running: Server = await nursery.start(serve, settings)
    yield running
    running.request_stop()
    await running.stopped.wait()


def _drive(scenario: str, url: str, shots: Path, args: Any = None) -> dict[str, Any]:
    """Drive the browser in a process of its own: trio-asyncio's event loop
    policy in this one would capture Playwright's asyncio loop."""
    driver = str(Path(__file__).with_name("dashboard_driver.py"))
    done = subprocess.run(
        [sys.executable, driver, scenario, url, str(shots), json.dumps(args or {})],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


async def test_the_dashboard_starts_follows_resumes_and_cancels_runs(
    server: Server, tmp_path: Path
) -> None:
    out = await trio.to_thread.run_sync(_drive, "runs", server.url, tmp_path)
    assert out["ids"] == list(range(43)), "every event once, in order, after the reload"
    assert out["events"][0] == "metadata"
    assert out["events"][-1] == "end"
    assert out["list_status"] == "success", "the list updated live"
    assert out["cancelled"] == "interrupted (user)"
    assert out["rows"] == 2


async def _finished(client: httpx.AsyncClient, thread_id: str, body: JSON) -> str:
    """Start a run on the thread and wait for its end; its id."""
    run = (await client.post(f"/threads/{thread_id}/runs", json=body)).json()
    await client.get(f"/threads/{thread_id}/runs/{run['run_id']}/join")
    return str(run["run_id"])


async def test_the_dashboard_charts_runs_and_events_and_shows_details_filters_and_threads(
    server: Server, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    thread = (await client.post("/threads", json={})).json()["thread_id"]
    echo = await _finished(client, thread, {"assistant_id": "echo", "input": {"hello": "runyard"}})
    failed = await _finished(client, thread, {"assistant_id": "failing", "input": {}})
    sleepy = await client.post("/runs", json={"assistant_id": "sleepy", "input": {"delay": 600}})
    cancelled = sleepy.json()["run_id"]
    await client.post(f"/runs/{cancelled}/cancel", params={"wait": "1"})
    args = {"thread": thread, "echo": echo, "failed": failed, "cancelled": cancelled}

    out = await trio.to_thread.run_sync(_drive, "overview", server.url, tmp_path, args)

    none = {"pending": 0, "running": 0, "timeout": 0}
    assert out["counts_before"] == {**none, "success": 1, "error": 1, "interrupted": 1}
    # While the emitter streamed (200 events in ~4 s), it showed as running, at some rate.
    assert out["rate_shown"] > 0
    assert out["rate_points"] >= 2
    assert out["counts_after"] == {**none, "success": 2, "error": 1, "interrupted": 1}
    emitter = out["emitter_details"]
    assert emitter["agent"] == "emitter"
    assert json.loads(emitter["input"]) == {"n": 200, "delay": 0.02}
    assert json.loads(emitter["output"]) == {"done": 200}
    assert emitter["attempt"] == "1"
    assert emitter["duration"].endswith(" s"), emitter["duration"]
    assert float(emitter["duration"].split()[0]) >= 3.0, "200 events 0.02 s apart"
    assert emitter["cancel reason"] == emitter["error"] == NOTHING
    echoed = out["echo_details"]
    assert json.loads(echoed["input"]) == json.loads(echoed["output"]) == {"hello": "runyard"}
    assert echoed["attempt"] == "1"
    # The thread view lists the thread's runs, newest first; a click there opens one.
    assert out["thread_shown"] == thread
    assert out["thread_count"] == "2 runs"
    assert out["thread_runs"] == [failed, echo]
    assert out["thread_selected"] == failed
    fail = out["failed_details"]
    assert fail["error"] == "DemoFailure: the agent failed; details are in the server log"
    assert fail["output"] == f"{NOTHING} (no output: error)"
    assert fail["cancel reason"] == NOTHING
    assert out["cancelled_status"] == "interrupted (user)"
    assert out["cancelled_details"]["cancel reason"] == "user"
    assert out["cancelled_details"]["agent"] == "sleepy"
    # Filters.
    assert set(out["all_rows"]) == {out["emitter"], cancelled, failed, echo}
    assert out["error_rows"] == [failed]
    assert out["error_shown"] == "1 of 4 shown"
    assert out["timeout_rows"] == []
    assert out["timeout_empty"] == "No runs match the filters."
    assert out["echo_rows"] == out["echo_rows_after_reload"] == [echo]
    assert out["agent_filter_after_reload"] == "echo"
    assert out["bar_rows"] == [cancelled]
    assert out["bar_filter"] == "interrupted"


async def test_the_dashboard_shows_every_event_and_answers_an_interrupt(
    chat_server: Server, tmp_path: Path
) -> None:
    async with httpx.AsyncClient(base_url=chat_server.url, timeout=30) as c:
        ask = {"messages": [{"type": "human", "content": "please approve the deploy"}]}
        body = {"assistant_id": "chat", "input": ask, "stream_mode": GRAPH_MODES}
        asked = (await c.post("/runs", json=body)).json()
        thread_id = asked["thread_id"]
        await c.get(f"/threads/{thread_id}/runs/{asked['run_id']}/join")
        assert (await c.get(f"/threads/{thread_id}")).json()["status"] == "interrupted"

        out = await trio.to_thread.run_sync(
            _drive, "interrupt", chat_server.url, tmp_path, {"run_id": asked["run_id"]}
        )

        thread = (await c.get(f"/threads/{thread_id}")).json()
        runs = (await c.get(f"/threads/{thread_id}/runs")).json()
    assert not out["cancel_visible_before_selection"], "no Cancel before a run is selected"
    assert not out["interrupt_visible_before_selection"]
    assert out["cancel_visible_after_selection"]
    assert out["herald_events"] == ["metadata", "review/step", "progress", "values", "end"]
    assert {"debug", "tasks", "checkpoints"} <= set(out["asked_events"]), out["asked_events"]
    assert out["badge"] == "needs answer"
    assert out["question"] == {
        "question": "Approve this request?",
        "request": "please approve the deploy",
    }
    assert out["thread_status"] == "interrupted"
    assert out["refusal"].startswith("Not sent: the answer is not valid JSON")
    assert out["rows_added_by_refusal"] == 0
    assert out["selected_after_refusal"] == asked["run_id"]
    resumed = out["resumed_run"]
    assert out["selected_row"] == resumed
    assert out["resumed_events"][-1] == "end"
    last_reply = out["resumed_values"][-1]["messages"][-1]["content"]
    assert last_reply == "Decision on 'please approve the deploy': yes"
    assert not out["interrupt_visible_after"]
    assert out["badges_after"] == 0
    # Over HTTP: the invalid answer never reached the server; the valid one resumed the thread.
    assert [r["run_id"] for r in runs] == [resumed, asked["run_id"]]
    assert runs[0]["status"] == "success"
    assert runs[0]["kwargs"]["command"] == {"resume": "yes"}
    assert thread["status"] == "idle"
    assert thread["interrupts"] == {}
