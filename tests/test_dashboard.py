"""The dashboard in a real headless browser (Debian's chromium, driven by Playwright).

Skipped, with the reason, where chromium or playwright is missing;
``./scripts/test`` installs both on CI. The interrupt test serves
``examples/chat`` and needs the ``runyard[langgraph]`` extra.
"""

from __future__ import annotations

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

CHROMIUM = os.environ.get("RUNYARD_CHROMIUM", "/usr/bin/chromium")

pytestmark = [
    pytest.mark.trio,
    pytest.mark.skipif(
        shutil.which(CHROMIUM) is None,
        reason=f"no chromium at {CHROMIUM} (apt-get install chromium)",
    ),
]


@agent(description="Emits events it names itself, as agents may.")
async def herald(input: JSON, ctx: RunContext) -> JSON:
    await ctx.emit("review/step", {"step": 1})
    await ctx.emit("progress", {"done": 0.5})
    return {"heralded": 2}


@pytest.fixture
async def chat_server(settings: Settings, nursery: trio.Nursery) -> AsyncIterator[Server]:
    """examples/chat, the demo agents and :func:`herald`."""
    pytest.importorskip("langgraph", reason="the runyard[langgraph] extra is not installed")
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
    pytest.importorskip("playwright", reason="playwright is not installed")
    out = await trio.to_thread.run_sync(_drive, "runs", server.url, tmp_path)
    assert out["ids"] == list(range(43)), "every event once, in order, after the reload"
    assert out["events"][0] == "metadata"
    assert out["events"][-1] == "end"
    assert out["list_status"] == "success", "the list updated live"
    assert out["cancelled"] == "interrupted (user)"
    assert out["rows"] == 2


async def test_the_dashboard_shows_every_event_and_answers_an_interrupt(
    chat_server: Server, tmp_path: Path
) -> None:
    pytest.importorskip("playwright", reason="playwright is not installed")
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
