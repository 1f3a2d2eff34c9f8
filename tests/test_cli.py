"""The runyard command's client half, against a real server."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
import trio

from runyard.cli import build_parser
from runyard.client_cli import EXIT_CODES, run_command
from runyard.server import Server

pytestmark = pytest.mark.trio


async def cli(server: Server, *argv: str) -> tuple[int, str]:
    def run() -> tuple[int, str]:
        out = io.StringIO()
        args = build_parser().parse_args([*argv, "--url", server.url])
        return run_command(args, out), out.getvalue()

    return await trio.to_thread.run_sync(run)


def _lines(text: str) -> list[Any]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


async def test_run_follow_prints_events_and_exits_with_the_status(server: Server) -> None:
    code, out = await cli(server, "run", "emitter", "--input", '{"n": 3}', "--follow")
    assert code == EXIT_CODES["success"] == 0
    assert "custom" in out
    assert out.strip().splitlines()[-1].endswith("success")
    code, out = await cli(server, "run", "failing", "--follow")
    assert code == EXIT_CODES["error"]
    assert "DemoFailure" in out
    assert "SECRET" not in out


async def test_json_output_and_stream_from_an_id(server: Server) -> None:
    code, out = await cli(server, "run", "emitter", "--input", '{"n": 5}', "--json")
    assert code == 0
    run = _lines(out)[0]
    code, out = await cli(server, "wait", run["run_id"], "--json")
    assert code == 0
    assert _lines(out)[0]["output"] == {"done": 5}
    code, out = await cli(server, "stream", run["run_id"], "--from", "3", "--json")
    events = _lines(out)
    assert [e["id"] for e in events] == [4, 5, 6, 7]
    assert events[-1]["event"] == "end"
    code, out = await cli(server, "stream", run["run_id"], "--from", "7")
    assert code == 0
    assert out.strip().endswith("success")


async def test_cancel_runs_and_threads_listings(server: Server) -> None:
    code, out = await cli(server, "run", "sleepy", "--input", '{"delay": 600}', "--json")
    run = _lines(out)[0]
    code, out = await cli(server, "cancel", run["run_id"])
    assert code == 0
    assert out.strip() == f"run {run['run_id']} interrupted (user)"
    code, out = await cli(server, "wait", run["run_id"])
    assert code == EXIT_CODES["interrupted"]
    code, out = await cli(server, "runs", "--status", "interrupted")
    assert run["run_id"] in out
    code, out = await cli(server, "runs", "--thread", run["thread_id"], "--json")
    assert [r["run_id"] for r in _lines(out)] == [run["run_id"]]
    code, out = await cli(server, "threads", "--json")
    assert run["thread_id"] in [t["thread_id"] for t in _lines(out)]


async def test_clear_errors_for_bad_input_and_unknown_ids(server: Server) -> None:
    code, _ = await cli(server, "run", "nobody")
    assert code == 2
    code, _ = await cli(server, "wait", "no-such-run")
    assert code == 2
    code, _ = await cli(server, "run", "echo", "--input", "{oops")
    assert code == 2


async def test_the_server_process_keeps_the_collector_off_the_request_path() -> None:
    import gc

    from runyard.cli import GC_YOUNG_THRESHOLD, tune_gc

    before = gc.get_threshold()
    try:
        tune_gc()
        assert gc.get_freeze_count() > 0  # start-up objects are out of the collector's reach
        assert gc.get_threshold() == (GC_YOUNG_THRESHOLD, *before[1:])
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
