"""Crons: each time fires exactly one ordinary run, across restarts and schedulers sharing
a database; missed times fire once; the SDKs' cron calls as the reference server answers."""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import shutil
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from runyard.crons import CronChange, CronSpec, check_schedule, check_timezone, next_time
from runyard.errors import BadRequest, Invalid, NotFound
from runyard.model import Cron, RunRequest, Thread, now
from runyard.server import Server
from runyard.store import SQLiteStore
from runyard.supervisor import Supervisor

from .helpers import start_supervisor
from .test_sdk_compat import in_client

EVERY_SECOND = "* * * * * *"  # six fields: seconds last, as on LangGraph's server
JS_CRONS = Path(__file__).with_name("js") / "crons.mjs"


async def _cron_runs(store: SQLiteStore, cron_id: str) -> list[Any]:
    runs = await store.list_runs(None, status=None, limit=1000, offset=0, owner="")
    return sorted((r for r in runs if r.metadata.get("cron_id") == cron_id), key=_created)


def _created(run: Any) -> float:
    return float(run.created_at)


def _thread(tid: str) -> Thread:
    ts = now()
    return Thread(tid, ts, ts)


# -- times ----------------------------------------------------------------------


def test_times_follow_the_expression_in_its_time_zone_utc_by_default() -> None:
    base = datetime(2026, 3, 28, 23, 59, 58, tzinfo=UTC).timestamp()
    assert (
        next_time("*/5 * * * *", None, base) == datetime(2026, 3, 29, 0, 0, tzinfo=UTC).timestamp()
    )
    assert next_time(EVERY_SECOND, None, base) == base + 1
    assert next_time("* * * * * */2", None, base + 1) == base + 2  # seconds last
    # 09:00 in Paris on 2026-03-30 is 07:00 UTC (summer time began the day before).
    paris = next_time("0 9 * * *", "Europe/Paris", datetime(2026, 3, 30, tzinfo=UTC).timestamp())
    assert paris == datetime(2026, 3, 30, 7, 0, tzinfo=UTC).timestamp()


def test_a_bad_expression_or_time_zone_is_refused_naming_the_field() -> None:
    for bad in ("", "* * *", "61 * * * *", "every minute", "* " * 200):
        with pytest.raises(Invalid, match="'schedule'"):
            check_schedule(bad)
    with pytest.raises(Invalid, match="'timezone'"):
        check_timezone("Mars/Olympus")
    check_schedule("@hourly")
    check_timezone("America/New_York")


# -- firing ---------------------------------------------------------------------

DAY = 24 * 3600.0  # seconds


async def test_a_cron_on_a_thread_fires_one_ordinary_run_per_time_with_its_id_in_metadata(
    supervisor: Supervisor, store: SQLiteStore
) -> None:
    await store.put_thread(_thread("t-cron"))
    request = RunRequest("echo", {"hello": "cron"}, thread_id="t-cron")
    cron = await supervisor.crons.create(request, CronSpec(EVERY_SECOND, metadata={"k": "v"}))
    assert cron.next_run_at is not None
    assert cron.next_run_at <= now() + 1
    await trio.sleep(3.2)
    await supervisor.crons.update(cron.cron_id, CronChange(enabled=False))
    await trio.sleep(0.2)
    runs = await _cron_runs(store, cron.cron_id)
    assert 2 <= len(runs) <= 4
    # One run per second of the schedule: never two in the same second.
    seconds = [int(r.created_at) for r in runs]
    assert len(set(seconds)) == len(seconds)
    for run in runs:
        assert run.thread_id == "t-cron"
        assert run.metadata == {"k": "v", "cron_id": cron.cron_id}
        assert run.kwargs["input"] == {"hello": "cron"}
    finished = await supervisor.wait_run(runs[0].run_id)
    assert finished.status == "success"
    stored = await store.get_cron(cron.cron_id)
    assert stored is not None
    assert stored.claim is None
    # Disabled: no more runs.
    await trio.sleep(1.5)
    assert len(await _cron_runs(store, cron.cron_id)) == len(runs)


async def test_a_thread_less_cron_gives_each_run_a_new_thread_deleted_unless_kept(
    supervisor: Supervisor, store: SQLiteStore
) -> None:
    kept = await supervisor.crons.create(
        RunRequest("echo", {"x": 1}), CronSpec(EVERY_SECOND, on_run_completed="keep")
    )
    dropped = await supervisor.crons.create(RunRequest("echo", {"x": 2}), CronSpec(EVERY_SECOND))
    assert (kept.on_run_completed, dropped.on_run_completed) == ("keep", "delete")
    await trio.sleep(2.5)
    await supervisor.crons.delete(kept.cron_id)
    await supervisor.crons.delete(dropped.cron_id)
    runs = await _cron_runs(store, kept.cron_id)
    assert len(runs) >= 2
    assert len({r.thread_id for r in runs}) == len(runs)
    for run in runs:
        assert (await supervisor.wait_run(run.run_id)).status == "success"
        assert await store.get_thread(run.thread_id) is not None
    # A deleted run's thread goes with its runs: nothing of the other cron is left.
    await trio.sleep(0.5)
    assert await _cron_runs(store, dropped.cron_id) == []
    with pytest.raises(NotFound):
        await supervisor.crons.get(kept.cron_id)


async def test_times_missed_while_down_fire_once_at_start_then_the_schedule_resumes(
    store: SQLiteStore, nursery: trio.Nursery
) -> None:
    ts = now()
    cron = Cron(
        cron_id="missed",
        assistant_id="echo",
        thread_id=None,
        # Daily: no new time can fall due while the test waits (every 10 s could).
        schedule="0 0 * * *",
        timezone=None,
        payload={"assistant_id": "echo", "input": {"late": True}},
        metadata={},
        created_at=ts - 4 * DAY,
        updated_at=ts - 4 * DAY,
        next_run_at=ts - 3 * DAY,  # 3 times were missed
        on_run_completed="keep",
    )
    await store.put_cron(cron)
    sup = await start_supervisor(nursery, store)
    await trio.sleep(0.5)
    runs = await _cron_runs(store, "missed")
    assert len(runs) == 1  # once for all of them, not a storm
    stored = await store.get_cron("missed")
    assert stored is not None
    assert stored.next_run_at is not None
    # The schedule goes on from now: its next time is the first one after the start.
    fired_at = runs[0].created_at  # a moment after the claim that moved the cron on
    assert stored.next_run_at in {
        next_time(cron.schedule, None, t) for t in (fired_at - 0.5, fired_at)
    }
    assert 0 < stored.next_run_at - now() <= DAY
    await sup.shutdown(0)


async def test_two_schedulers_on_one_database_fire_each_time_once(
    db_path: str, nursery: trio.Nursery
) -> None:
    stores = [SQLiteStore(db_path), SQLiteStore(db_path)]
    for s in stores:
        await s.open()
    try:
        sups = [await start_supervisor(nursery, s) for s in stores]
        cron = await sups[0].crons.create(
            RunRequest("echo", {}), CronSpec(EVERY_SECOND, on_run_completed="keep")
        )
        sups[1].cron_scheduler.wake()
        await trio.sleep(4.2)
        await sups[0].crons.update(cron.cron_id, CronChange(enabled=False))
        await trio.sleep(0.3)
        runs = await _cron_runs(stores[0], cron.cron_id)
        assert len(runs) >= 3
        seconds = [int(r.created_at) for r in runs]
        assert len(set(seconds)) == len(seconds), "a time fired twice"
        fired = [s.cron_scheduler.stats.fired for s in sups]
        assert sum(fired) == len(runs)
        for sup in sups:
            await sup.shutdown(0)
    finally:
        for s in stores:
            await s.aclose()


async def test_a_restart_between_times_neither_doubles_nor_loses_one(
    store: SQLiteStore, nursery: trio.Nursery
) -> None:
    first = await start_supervisor(nursery, store)
    cron = await first.crons.create(
        RunRequest("echo", {}), CronSpec(EVERY_SECOND, on_run_completed="keep")
    )
    await trio.sleep(2.3)
    await first.shutdown(0)
    before = await _cron_runs(store, cron.cron_id)
    second = await start_supervisor(nursery, store)
    await trio.sleep(2.3)
    await second.shutdown(0)
    runs = await _cron_runs(store, cron.cron_id)
    seconds = [int(r.created_at) for r in runs]
    assert len(set(seconds)) == len(seconds), "a time fired twice"
    assert len(runs) > len(before) >= 2
    # No time lost across the restart: at most the restart's own second between runs.
    assert all(b - a <= 2 for a, b in itertools.pairwise(seconds))


async def test_a_claim_whose_run_was_never_written_is_taken_over_once(
    store: SQLiteStore, nursery: trio.Nursery
) -> None:
    ts = now()
    cron = Cron(
        cron_id="orphan",
        assistant_id="echo",
        thread_id=None,
        schedule="0 0 1 1 *",  # next year: only the claimed time can fire
        timezone=None,
        payload={"assistant_id": "echo"},
        metadata={},
        created_at=ts,
        updated_at=ts,
        next_run_at=next_time("0 0 1 1 *", None, ts),
        on_run_completed="keep",
        claim="dead-process",
        claimed_at=ts - 3600,  # a process that died an hour ago
    )
    await store.put_cron(cron)
    sup = await start_supervisor(nursery, store)
    await trio.sleep(0.8)
    assert len(await _cron_runs(store, "orphan")) == 1
    stored = await store.get_cron("orphan")
    assert stored is not None
    assert stored.claim is None
    await sup.shutdown(0)


async def test_a_refused_run_skips_its_time_and_releases_the_claim(
    supervisor: Supervisor, store: SQLiteStore
) -> None:
    await store.put_thread(_thread("t-gone"))
    cron = await supervisor.crons.create(
        RunRequest("echo", {}, thread_id="t-gone"), CronSpec(EVERY_SECOND)
    )
    await store.delete_thread("t-gone")
    await store.put_cron(dataclasses.replace(cron, cron_id="c2", thread_id="t-missing"))
    supervisor.cron_scheduler.wake()
    await trio.sleep(1.5)
    stored = await store.get_cron("c2")
    assert stored is not None
    assert stored.claim is None
    assert supervisor.cron_scheduler.stats.skipped["NotFound"] >= 1
    assert await store.get_cron(cron.cron_id) is None  # went with its thread


async def test_crons_are_checked_when_made_and_belong_to_their_owner(
    supervisor: Supervisor, store: SQLiteStore
) -> None:
    with pytest.raises(NotFound):
        await supervisor.crons.create(RunRequest("nope"), CronSpec(EVERY_SECOND))
    with pytest.raises(NotFound):
        await supervisor.crons.create(RunRequest("echo", thread_id="t-none"), CronSpec("@daily"))
    with pytest.raises(Invalid):
        await supervisor.crons.create(RunRequest("echo"), CronSpec("@daily", timezone="Nowhere"))
    cron = await supervisor.crons.create(RunRequest("echo", owner="ann"), CronSpec("@daily"))
    with pytest.raises(NotFound):
        await supervisor.crons.get(cron.cron_id, owner="bob")
    with pytest.raises(NotFound):
        await supervisor.crons.update(cron.cron_id, CronChange(enabled=False), owner="bob")
    with pytest.raises(BadRequest):
        await supervisor.crons.update(cron.cron_id, CronChange(), owner="ann")
    assert await supervisor.crons.count(owner="bob") == 0
    assert await supervisor.crons.count(owner="ann") == 1
    changed = await supervisor.crons.update(
        cron.cron_id, CronChange(schedule="0 12 * * *", timezone="Asia/Tokyo"), owner="ann"
    )
    assert changed.next_run_at == next_time("0 12 * * *", "Asia/Tokyo", changed.updated_at)


# -- over HTTP, through the SDKs ---------------------------------------------------


async def test_the_python_sdk_creates_searches_counts_updates_and_deletes_crons(
    server: Server, client: httpx.AsyncClient
) -> None:
    end = (datetime.now(UTC) + timedelta(days=1)).replace(microsecond=0)

    def script(sdk: Any) -> dict[str, Any]:
        seen: dict[str, Any] = {}
        thread = sdk.threads.create()
        seen["thread"] = thread["thread_id"]
        seen["on_thread"] = sdk.crons.create_for_thread(
            thread["thread_id"],
            "echo",
            schedule=EVERY_SECOND,
            input={"n": 1},
            metadata={"team": "a"},
            timezone="Europe/Paris",
        )
        seen["threadless"] = sdk.crons.create(
            "echo", schedule="0 9 * * *", end_time=end, on_run_completed="keep"
        )
        time.sleep(2.5)  # the cron on the thread fires there, as ordinary runs
        seen["runs"] = sdk.runs.list(thread["thread_id"])
        seen["by_assistant"] = sdk.crons.search(assistant_id="echo", limit=10)
        seen["by_thread"] = sdk.crons.search(thread_id=thread["thread_id"])
        seen["picked"] = sdk.crons.search(
            select=["cron_id", "schedule"], sort_by="created_at", sort_order="asc"
        )
        seen["count"] = sdk.crons.count()
        seen["count_team"] = sdk.crons.count(metadata={"team": "a"})
        on_thread = seen["on_thread"]["cron_id"]
        seen["updated"] = sdk.crons.update(on_thread, enabled=False, schedule="0 * * * *")
        seen["disabled"] = sdk.crons.search(enabled=False)
        seen["cleared"] = sdk.crons.update(seen["threadless"]["cron_id"], end_time=None)
        sdk.crons.delete(on_thread)
        return seen

    seen = await in_client(server, script)
    on_thread, threadless = seen["on_thread"], seen["threadless"]
    assert on_thread["thread_id"] == seen["thread"]
    assert on_thread["timezone"] == "Europe/Paris"
    assert on_thread["enabled"] is True
    assert on_thread["metadata"] == {"team": "a"}
    assert on_thread["next_run_date"] is not None
    assert threadless["thread_id"] is None
    assert threadless["on_run_completed"] == "keep"
    assert datetime.fromisoformat(threadless["end_time"]) == end
    assert seen["runs"]
    assert all(r["metadata"]["cron_id"] == on_thread["cron_id"] for r in seen["runs"])
    ids = {on_thread["cron_id"], threadless["cron_id"]}
    assert {c["cron_id"] for c in seen["by_assistant"]} == ids
    assert [c["cron_id"] for c in seen["by_thread"]] == [on_thread["cron_id"]]
    assert seen["picked"] == [
        {"cron_id": on_thread["cron_id"], "schedule": EVERY_SECOND},
        {"cron_id": threadless["cron_id"], "schedule": "0 9 * * *"},
    ]
    assert (seen["count"], seen["count_team"]) == (2, 1)
    assert seen["updated"]["enabled"] is False
    assert seen["updated"]["schedule"] == "0 * * * *"
    assert [c["cron_id"] for c in seen["disabled"]] == [on_thread["cron_id"]]
    assert seen["cleared"]["end_time"] is None
    assert (await client.get(f"/runs/crons/{on_thread['cron_id']}")).status_code == 404
    assert (await client.delete(f"/runs/crons/{on_thread['cron_id']}")).status_code == 404
    assert (await client.get(f"/runs/crons/{threadless['cron_id']}")).json() == seen["cleared"]
    info = (await client.get("/info")).json()
    assert info["flags"]["crons"] is True


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"assistant_id": "echo"}, "schedule"),
        ({"assistant_id": "echo", "schedule": "not a cron"}, "schedule"),
        ({"assistant_id": "echo", "schedule": "@daily", "timezone": "Nowhere"}, "timezone"),
        ({"assistant_id": "echo", "schedule": "@daily", "end_time": "soon"}, "end_time"),
        ({"assistant_id": "echo", "schedule": "@daily", "webhook": "ftp://x"}, "webhook"),
        (
            {"assistant_id": "echo", "schedule": "@daily", "on_run_completed": "x"},
            "on_run_completed",
        ),
    ],
)
async def test_a_bad_cron_body_is_a_422_naming_the_field(
    client: httpx.AsyncClient, body: dict[str, Any], field: str
) -> None:
    response = await client.post("/runs/crons", json=body)
    assert response.status_code == 422
    assert f"'{field}'" in response.json()["detail"]
    assert (await client.post("/runs/crons", json={**body, "assistant_id": ""})).status_code == 422


@pytest.mark.skipif(
    shutil.which("node") is None and os.environ.get("CI") != "true",
    reason="node is not installed (required on CI)",
)
async def test_the_js_sdk_creates_searches_counts_updates_and_deletes_crons(
    server: Server,
) -> None:
    result = await trio.run_process(
        ["node", str(JS_CRONS), server.url], capture_stdout=True, capture_stderr=True, check=False
    )
    assert result.returncode == 0, result.stderr.decode()
    seen = json.loads(result.stdout)
    assert seen["created"]["schedule"] == EVERY_SECOND
    assert seen["created_threadless"]["thread_id"] is None
    assert seen["search_ids"] == sorted(
        [seen["created"]["cron_id"], seen["created_threadless"]["cron_id"]]
    )
    assert seen["count"] == 2
    assert seen["updated"]["enabled"] is False
    assert seen["fired"] >= 1
    assert seen["count_after_delete"] == 1
