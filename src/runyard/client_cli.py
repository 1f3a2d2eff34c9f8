"""The client half of the ``runyard`` command: talk to a running server.

Readable output by default, ``--json`` for scripts (one JSON value per
line). The exit code says how the run ended: see :data:`EXIT_CODES`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Iterator
from typing import Any, TextIO

import httpx

from .config import Settings

_SERVER = Settings()
DEFAULT_URL = f"http://{_SERVER.host}:{_SERVER.port}"  # where `runyard serve` listens by default
EXIT_CODES = {"success": 0, "error": 1, "timeout": 3, "interrupted": 4}
EXIT_USAGE = 2  # bad arguments, unknown ids, a server that cannot be reached
# Reconnects of a followed stream before giving up (each resumes by Last-Event-ID).
RECONNECTS = 5


class ClientError(Exception):
    """Something to tell the user in one line; exit code 2."""


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    def common(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--url", default=os.environ.get("RUNYARD_URL", DEFAULT_URL),
                       help=f"the server (default $RUNYARD_URL or {DEFAULT_URL})")  # fmt: skip
        p.add_argument("--json", action="store_true", help="machine-readable output")
        return p

    p = common(sub.add_parser("run", help="start a run"))
    p.add_argument("agent", help="the agent (assistant id)")
    p.add_argument("--input", default="{}", help="the input, as JSON")
    p.add_argument("--thread", help="run on this thread (default: a new one)")
    p.add_argument("--follow", action="store_true", help="stream its events until it ends")
    p = common(sub.add_parser("stream", help="follow a run's events (replays from the start)"))
    p.add_argument("run_id")
    p.add_argument("--from", dest="after", type=int, help="only events after this id")
    p = common(sub.add_parser("wait", help="wait for a run to end; print its output"))
    p.add_argument("run_id")
    p = common(sub.add_parser("cancel", help="cancel a run and wait for its final state"))
    p.add_argument("run_id")
    p = common(sub.add_parser("runs", help="list runs, newest first"))
    p.add_argument("--thread", help="only this thread's runs")
    p.add_argument("--status", help="only runs with this status")
    p.add_argument("--limit", type=int, default=20)
    p = common(sub.add_parser("threads", help="list threads, newest first"))
    p.add_argument("--limit", type=int, default=20)


def run_command(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    try:
        with httpx.Client(base_url=args.url, timeout=httpx.Timeout(30, read=None)) as http:
            return _COMMANDS[args.command](http, args, out)
    except ClientError as exc:
        print(f"runyard: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except httpx.TransportError as exc:
        print(f"runyard: cannot reach {args.url} ({exc.__class__.__name__})", file=sys.stderr)
        return EXIT_USAGE


def _check(response: httpx.Response) -> Any:
    if response.is_success:
        return response.json() if response.content else None
    try:
        detail = response.json().get("detail", response.text)
    except ValueError:
        detail = response.text
    raise ClientError(f"{detail} (HTTP {response.status_code})")


def _run(http: httpx.Client, run_id: str) -> dict[str, Any]:
    run: dict[str, Any] = _check(http.get(f"/runs/{run_id}"))
    return run


def _emit(out: TextIO, args: argparse.Namespace, value: Any, text: str) -> None:
    print(json.dumps(value) if args.json else text, file=out, flush=True)


def _exit_for(run: dict[str, Any]) -> int:
    return EXIT_CODES.get(run["status"], EXIT_USAGE)


def _describe(run: dict[str, Any]) -> str:
    text = f"run {run['run_id']} {run['status']}"
    if run.get("cancel_reason"):
        text += f" ({run['cancel_reason']})"
    if run.get("error"):
        text += f": {run['error']['error']}: {run['error']['message']}"
    return text


# -- commands -----------------------------------------------------------------


def _cmd_run(http: httpx.Client, args: argparse.Namespace, out: TextIO) -> int:
    try:
        value = json.loads(args.input)
    except ValueError:
        raise ClientError("--input is not valid JSON") from None
    path = f"/threads/{args.thread}/runs" if args.thread else "/runs"
    body = {"assistant_id": args.agent, "input": value, "on_disconnect": "continue"}
    run = _check(http.post(path, json=body))
    if not args.follow:
        _emit(out, args, run, f"started run {run['run_id']} on thread {run['thread_id']}")
        return 0
    if not args.json:
        print(f"started run {run['run_id']} on thread {run['thread_id']}", file=out, flush=True)
    return _follow(http, args, out, run, after=None)


def _cmd_stream(http: httpx.Client, args: argparse.Namespace, out: TextIO) -> int:
    return _follow(http, args, out, _run(http, args.run_id), after=args.after)


def _cmd_wait(http: httpx.Client, args: argparse.Namespace, out: TextIO) -> int:
    run = _run(http, args.run_id)
    output = _check(http.get(f"/threads/{run['thread_id']}/runs/{run['run_id']}/join"))
    run = _run(http, args.run_id)
    if args.json:
        _emit(out, args, {"run": run, "output": output}, "")
    else:
        print(_describe(run), file=out)
        if run["status"] == "success":
            print(json.dumps(output, indent=2, ensure_ascii=False), file=out)
    return _exit_for(run)


def _cmd_cancel(http: httpx.Client, args: argparse.Namespace, out: TextIO) -> int:
    run = _run(http, args.run_id)
    path = f"/threads/{run['thread_id']}/runs/{run['run_id']}/cancel"
    run = _check(http.post(path, params={"wait": 1}))
    _emit(out, args, run, _describe(run))
    return 0


def _listing(out: TextIO, args: argparse.Namespace, items: list[Any], noun: str, line: Any) -> int:
    """A list: one JSON value per line with --json, else one readable ``line(item)`` each."""
    if args.json:
        for item in items:
            _emit(out, args, item, "")
        return 0
    if not items:
        print(f"no {noun}", file=out)
    for item in items:
        print(line(item), file=out)
    return 0


def _run_line(run: dict[str, Any]) -> str:
    reason = f" ({run['cancel_reason']})" if run.get("cancel_reason") else ""
    return (
        f"{run['run_id']}  {run['assistant_id']:<12} {run['status']}{reason:<14} "
        f"{run['created_at'][:19]}  thread {run['thread_id']}"
    )


def _thread_line(thread: dict[str, Any]) -> str:
    meta = json.dumps(thread["metadata"], ensure_ascii=False) if thread["metadata"] else ""
    return f"{thread['thread_id']}  {thread['status']:<11} {thread['created_at'][:19]}  {meta}"


def _cmd_runs(http: httpx.Client, args: argparse.Namespace, out: TextIO) -> int:
    params: dict[str, Any] = {"limit": args.limit}
    if args.status:
        params["status"] = args.status
    path = f"/threads/{args.thread}/runs" if args.thread else "/runs"
    return _listing(out, args, _check(http.get(path, params=params)), "runs", _run_line)


def _cmd_threads(http: httpx.Client, args: argparse.Namespace, out: TextIO) -> int:
    threads = _check(http.post("/threads/search", json={"limit": args.limit}))
    return _listing(out, args, threads, "threads", _thread_line)


_COMMANDS = {
    "run": _cmd_run,
    "stream": _cmd_stream,
    "wait": _cmd_wait,
    "cancel": _cmd_cancel,
    "runs": _cmd_runs,
    "threads": _cmd_threads,
}


# -- following a stream ---------------------------------------------------------


def _follow(
    http: httpx.Client,
    args: argparse.Namespace,
    out: TextIO,
    run: dict[str, Any],
    after: int | None,
) -> int:
    """Print the run's events until ``end``, resuming by Last-Event-ID after a drop."""
    path = f"/threads/{run['thread_id']}/runs/{run['run_id']}/stream"
    progress = _Progress(out, enabled=not args.json and out.isatty(), run_id=run["run_id"])
    last = after
    tries = 0
    while True:
        headers = {} if last is None else {"Last-Event-ID": str(last)}
        try:
            with http.stream("GET", path, headers=headers) as response:
                if response.status_code == 204:
                    break  # nothing after that id: the run is over
                if not response.is_success:
                    response.read()
                    _check(response)
                for ident, event, data in _frames(response.iter_lines()):
                    tries = 0
                    last = ident
                    if args.json:
                        _emit(out, args, {"id": ident, "event": event, "data": data}, "")
                    else:
                        progress.event(ident, event, data)
                    if event == "end":
                        progress.done()
                        final = _run(http, run["run_id"])
                        if not args.json:
                            print(_describe(final), file=out)
                        return _exit_for(final)
        except httpx.TransportError:
            tries += 1
            if tries > RECONNECTS:
                raise
            time.sleep(min(2**tries * 0.25, 5))
            continue
        # The stream closed without end (a restart): the run tells what to do.
        if _run(http, run["run_id"])["status"] not in ("pending", "running"):
            break
    progress.done()
    final = _run(http, run["run_id"])
    if not args.json:
        print(_describe(final), file=out)
    return _exit_for(final)


def _frames(lines: Iterator[str]) -> Iterator[tuple[int, str, Any]]:
    event, data, ident = "message", "", None
    for line in lines:
        if line == "":
            if ident is not None:
                yield ident, event, json.loads(data) if data else None
            event, data, ident = "message", "", None
        elif line.startswith("event: "):
            event = line[7:]
        elif line.startswith("data: "):
            data = line[6:]
        elif line.startswith("id: "):
            ident = int(line[4:])


class _Progress:
    """One live line on a terminal; plain lines otherwise."""

    def __init__(self, out: TextIO, *, enabled: bool, run_id: str) -> None:
        self.out = out
        self.enabled = enabled
        self.run_id = run_id
        self.count = 0
        self.started = time.monotonic()

    def event(self, ident: int, event: str, data: Any) -> None:
        self.count += 1
        text = json.dumps(data, ensure_ascii=False)
        if not self.enabled:
            print(f"{ident:>5}  {event:<9} {text}", file=self.out, flush=True)
            return
        elapsed = time.monotonic() - self.started
        line = (
            f"\r\x1b[2K{self.run_id[:8]} · {self.count} events · {elapsed:5.1f}s · {event} {text}"
        )
        self.out.write(line[:160])
        self.out.flush()

    def done(self) -> None:
        if self.enabled:
            self.out.write("\n")
            self.out.flush()
