"""The runyard command's client half, against a real server (and a fake LangGraph one)."""

from __future__ import annotations

import argparse
import io
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, NamedTuple

import httpx
import pytest
import trio

import runyard
from runyard.cli import build_parser, main
from runyard.client_cli import (
    EXIT_CODES,
    EXIT_CTRL_C,
    EXIT_HTTP,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    run_command,
)
from runyard.client_stream import Progress, fit, frames
from runyard.config import Settings
from runyard.server import Server, serve

from .process import free_port

ALICE = "alice-token-0123456789"


class Outcome(NamedTuple):
    code: int
    out: str
    err: str


async def cli(server: Server | str, *argv: str) -> Outcome:
    """Run the command in-process (in a thread: it blocks) against ``server``."""
    url = server if isinstance(server, str) else server.url

    def run() -> Outcome:
        out, err = io.StringIO(), io.StringIO()
        args = build_parser().parse_args([*argv, "--url", url])
        return Outcome(run_command(args, out, err), out.getvalue(), err.getvalue())

    return await trio.to_thread.run_sync(run)


def _lines(text: str) -> list[Any]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


@pytest.fixture
async def secured(settings: Settings, nursery: trio.Nursery) -> AsyncIterator[Server]:
    settings.tokens = {"alice": ALICE}
    server: Server = await nursery.start(serve, settings)
    yield server
    server.request_stop()
    await server.stopped.wait()


# -- runs and their exit codes ----------------------------------------------------


async def test_run_follow_prints_events_and_exits_with_the_status(server: Server) -> None:
    code, out, _ = await cli(server, "run", "emitter", "--input", '{"n": 3}', "--follow")
    assert code == EXIT_CODES["success"] == 0
    assert "custom" in out
    assert out.strip().splitlines()[-1].endswith("success")
    code, out, _ = await cli(server, "run", "failing", "--follow")
    assert code == EXIT_CODES["error"] == 1
    assert "DemoFailure" in out
    assert "SECRET" not in out


async def test_json_output_and_stream_from_an_id(server: Server) -> None:
    code, out, _ = await cli(server, "run", "emitter", "--input", '{"n": 5}', "--json")
    assert code == 0
    run = _lines(out)[0]
    code, out, _ = await cli(server, "wait", run["run_id"], "--json")
    assert code == 0
    assert _lines(out)[0]["output"] == {"done": 5}
    code, out, _ = await cli(server, "stream", run["run_id"], "--from", "3", "--json")
    events = _lines(out)
    assert [e["id"] for e in events] == [4, 5, 6, 7]  # runyard's ids stay integers
    assert events[-1]["event"] == "end"
    code, out, _ = await cli(server, "stream", run["run_id"], "--from", "7")
    assert code == 0
    assert out.strip().endswith("success")
    code, out, _ = await cli(server, "stream", run["run_id"], "--thread", run["thread_id"])
    assert code == 0
    assert out.strip().endswith("success")


async def test_cancel_exits_with_the_final_status_and_listings_show_it(server: Server) -> None:
    code, out, _ = await cli(server, "run", "sleepy", "--input", '{"delay": 600}', "--json")
    run = _lines(out)[0]
    code, out, _ = await cli(server, "cancel", run["run_id"])
    assert code == EXIT_CODES["interrupted"] == 4
    assert out.strip() == f"run {run['run_id']} interrupted (user)"
    code, out, _ = await cli(server, "wait", run["run_id"])
    assert code == EXIT_CODES["interrupted"]
    code, out, _ = await cli(server, "runs", "--status", "interrupted")
    assert run["run_id"] in out
    code, out, _ = await cli(server, "runs", "--thread", run["thread_id"], "--json")
    assert [r["run_id"] for r in _lines(out)] == [run["run_id"]]
    code, out, _ = await cli(server, "threads", "--json")
    assert run["thread_id"] in [t["thread_id"] for t in _lines(out)]


async def test_cancel_after_the_run_ended_exits_with_the_status_it_kept(server: Server) -> None:
    code, out, _ = await cli(server, "run", "echo", "--input", '"hi"', "--json")
    run_id = _lines(out)[0]["run_id"]
    code, out, _ = await cli(server, "wait", run_id)
    assert code == 0
    code, out, _ = await cli(server, "cancel", run_id, "--json")
    assert code == EXIT_CODES["success"]
    assert _lines(out)[0]["status"] == "success"


# -- errors: one line, a distinct exit code, never a traceback -----------------


async def test_usage_errors_exit_2(server: Server) -> None:
    code, out, err = await cli(server, "run", "echo", "--input", "{oops")
    assert (code, out, err) == (EXIT_USAGE, "", "runyard: --input is not valid JSON\n")
    code, _, err = await cli("localhost:2024", "runs")
    assert code == EXIT_USAGE
    assert "not an http:// or https:// address" in err
    with pytest.raises(SystemExit) as exited:
        main(["wait"])  # argparse: the run id is missing
    assert exited.value.code == EXIT_USAGE == 2


async def test_an_unreachable_server_exits_5() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    code, out, err = await cli(url, "runs")
    assert code == EXIT_UNREACHABLE == 5
    assert out == ""
    assert err.startswith(f"runyard: cannot reach {url}: ")
    assert err.count("\n") == 1


async def test_http_errors_exit_6_with_the_servers_detail(server: Server) -> None:
    code, _, err = await cli(server, "wait", "no-such-run")
    assert code == EXIT_HTTP == 6
    assert err.startswith("runyard: ")
    assert err.endswith("(HTTP 404)\n")
    assert err.count("\n") == 1
    code, _, err = await cli(server, "run", "nobody")
    assert code == EXIT_HTTP
    assert "nobody" in err
    assert "(HTTP 404)" in err
    code, _, err = await cli(server, "stream", "no-such-run", "--thread", "no-such-thread")
    assert code == EXIT_HTTP
    code, out, _ = await cli(server, "run", "echo", "--json")
    run_id = _lines(out)[0]["run_id"]
    code, _, err = await cli(server, "stream", run_id, "--from", "not-a-number")
    assert code == EXIT_HTTP
    assert "Last-Event-ID" in err
    assert "(HTTP 400)" in err
    assert "Traceback" not in err


async def test_the_token_comes_from_the_flag_or_runyard_token(
    secured: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RUNYARD_TOKEN", raising=False)
    code, _, err = await cli(secured, "runs")
    assert code == EXIT_HTTP
    assert err == (
        "runyard: a valid bearer token is required; pass --token or set RUNYARD_TOKEN (HTTP 401)\n"
    )
    code, _, err = await cli(secured, "runs", "--token", "wrong-token-0123456789")
    assert code == EXIT_HTTP
    assert "the token was refused" in err
    assert "wrong-token" not in err
    code, out, _ = await cli(secured, "run", "echo", "--token", ALICE, "--json")
    assert code == 0
    run = _lines(out)[0]
    monkeypatch.setenv("RUNYARD_TOKEN", ALICE)
    code, out, _ = await cli(secured, "wait", run["run_id"], "--json")
    assert code == 0
    assert _lines(out)[0]["run"]["run_id"] == run["run_id"]


# -- streams from any LangGraph server ---------------------------------------------


LG_IDS = ["1712345678901-0", "1712345678901-1", "1712345678902-0"]


class _LangGraphDev(BaseHTTPRequestHandler):
    """A langgraph-dev-like server: string event ids; its first stream drops after one event."""

    url: str
    received: list[str | None]  # Last-Event-ID of each stream request
    reads: int  # status reads so far: the run is running on the second (after the drop)

    def do_GET(self) -> None:
        cls = type(self)
        if self.path == "/threads/t1/runs/r1":
            cls.reads += 1
            status = "running" if cls.reads == 2 else "success"
            self._send("application/json", json.dumps({"run_id": "r1", "thread_id": "t1",
                                                       "status": status}).encode())  # fmt: skip
        elif self.path == "/threads/t1/runs/r1/stream":
            after = self.headers.get("Last-Event-ID")
            cls.received.append(after)
            start = 0 if after is None else LG_IDS.index(after) + 1
            ids = LG_IDS[start : start + 1] if after is None else LG_IDS[start:]
            body = "".join(
                f'id:{i}\nevent: values\ndata: {{"step": {LG_IDS.index(i)}}}\n\n' for i in ids
            )
            self._send("text/event-stream", (": heartbeat\n\n" + body).encode())
        else:
            self._send("application/json", b'{"detail": "Not Found"}', status=404)

    def _send(self, kind: str, body: bytes, status: int = 200) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def langgraph_dev() -> Iterator[type[_LangGraphDev]]:
    class Handler(_LangGraphDev):
        received = []
        reads = 0

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    Handler.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield Handler
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


async def test_stream_resumes_with_the_string_ids_a_langgraph_server_sends(
    langgraph_dev: type[_LangGraphDev],
) -> None:
    url = langgraph_dev.url
    code, out, err = await cli(url, "stream", "r1", "--thread", "t1", "--json")
    assert (code, err) == (0, "")
    assert [e["id"] for e in _lines(out)] == LG_IDS
    # The stream closed without end while the run was running: it rejoined after the last id.
    assert langgraph_dev.received == [None, LG_IDS[0]]
    langgraph_dev.received.clear()
    code, out, _ = await cli(url, "stream", "r1", "--thread", "t1", "--from", LG_IDS[1])
    assert code == 0
    assert langgraph_dev.received == [LG_IDS[1]]
    assert out.splitlines() == [f'{LG_IDS[2]}  values    {{"step": 2}}', "run r1 success"]


async def test_without_thread_a_server_lacking_runs_by_id_says_so(
    langgraph_dev: type[_LangGraphDev],
) -> None:
    code, _, err = await cli(langgraph_dev.url, "stream", "r1")
    assert (code, err) == (EXIT_HTTP, "runyard: Not Found (HTTP 404)\n")


def test_frames_follow_the_sse_parsing_rules() -> None:
    text = (
        ": a comment\n\n"
        'id:7\nevent:custom\ndata:{"a":\ndata: 1}\n\n'  # no space after the colon; two lines
        "event: values\ndata: not json\n\n"  # no id: the last one still holds
        "id: 1712345678901-0\ndata: 2\n\n"  # no event: a message
        "id: 3\nevent: nothing\n\n"  # no data: not an event, but the id is set
        "event: end\ndata: null\n\n"
    )
    assert list(frames(iter(text.split("\n")))) == [
        (7, "custom", {"a": 1}),
        (7, "values", "not json"),
        ("1712345678901-0", "message", 2),
        (3, "end", None),
    ]


# -- the terminal ---------------------------------------------------------------


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_progress_line_fits_the_terminal_width(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("shutil.get_terminal_size", lambda *a: os.terminal_size((40, 24)))
    screen = _Terminal()
    progress = Progress(screen, enabled=True, run_id="0123456789abcdef")
    progress.event(1, "custom", {"token": "x" * 200})
    progress.event("1712345678901-0", "messages", {"text": "界" * 100, "bell": "\x07\n"})
    progress.done()
    drawn = [frame.removeprefix("\x1b[2K") for frame in screen.getvalue().split("\r") if frame]
    assert len(drawn) == 2
    assert drawn[-1].endswith("\n")
    for line in drawn:
        assert fit(line.rstrip("\n"), 39) == line.rstrip("\n")  # one line, 39 cells at most
    assert len(drawn[0]) == 39
    assert drawn[0].startswith("01234567 · 1 events ·")
    assert fit("界" * 100, 39) == "界" * 19  # two cells each
    assert fit("e\u0301" * 50, 10) == "e\u0301" * 10  # combining accents take none
    assert fit("a\x1b[31mb", 10) == "a [31mb"  # nothing moves the cursor


# -- the command itself -------------------------------------------------------------


def _every_parser(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action._name_parser_map.values():
                yield from _every_parser(sub)


def test_every_argument_has_help_text() -> None:
    parsers = list(_every_parser(build_parser()))
    assert len(parsers) == 8  # runyard, serve and the six client commands
    for parser in parsers:
        for action in parser._actions:
            assert action.help, f"{parser.prog}: {action.dest} has no help text"
        if parser.prog != "runyard serve":
            assert "130 Ctrl-C" in (parser.epilog or "")


def test_python_dash_m_runyard_is_the_command() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "runyard", "--version"], capture_output=True, text=True, timeout=60
    )
    assert (done.returncode, done.stdout) == (0, f"runyard {runyard.__version__}\n")


async def test_ctrl_c_while_following_exits_130_in_one_line_and_the_run_goes_on(
    server: Server,
) -> None:
    argv = ["run", "sleepy", "--input", '{"delay": 600}', "--follow", "--url", server.url]
    proc = await trio.lowlevel.open_process(
        [sys.executable, "-m", "runyard", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stdout is not None
        assert proc.stderr is not None
        with trio.fail_after(30):
            # "started run ID on thread ID", then the first event: the stream is open.
            lines = await _read_lines(proc.stdout, 2)
            proc.send_signal(signal.SIGINT)
            assert await proc.wait() == EXIT_CTRL_C == 130
            err = (await _read_lines(proc.stderr, 2)).decode()
        run_id = lines.split()[2].decode()
        assert "Traceback" not in err
        assert err == (
            f"runyard: interrupted; run {run_id} goes on (runyard cancel {run_id} stops it)\n"
        )
        async with httpx.AsyncClient(base_url=server.url) as client:
            assert (await client.get(f"/runs/{run_id}")).json()["status"] == "running"
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def _read_lines(stream: trio.abc.ReceiveStream, count: int) -> bytes:
    """Up to ``count`` lines (fewer at the end of the stream)."""
    received = b""
    while received.count(b"\n") < count:
        chunk = await stream.receive_some()
        if not chunk:
            break
        received += chunk
    return received


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
