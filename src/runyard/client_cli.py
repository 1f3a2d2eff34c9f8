"""The client half of the ``runyard`` command: talk to a running server.

Readable output by default, ``--json`` for scripts (one JSON value per
line). The exit code says how the command, or the run, ended: see
:data:`EXIT_CODES` and the ``EXIT_*`` constants (docs/operations.md has the
table). Errors are one line on stderr, never a traceback; Ctrl-C ends the
command (the run goes on on the server) with exit code 130.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any, TextIO
from urllib.parse import quote

import httpx

from .client_stream import EventId, Progress, frames
from .config import Settings

_SERVER = Settings()
DEFAULT_URL = f"http://{_SERVER.host}:{_SERVER.port}"  # where `runyard serve` listens by default
# A run's final status, as the exit code of `run --follow`, `stream`, `wait` and `cancel`.
EXIT_CODES = {"success": 0, "error": 1, "timeout": 3, "interrupted": 4}
EXIT_USAGE = 2  # bad arguments (argparse uses 2 as well), --input that is not JSON, a bad --url
EXIT_UNREACHABLE = 5  # no answer: connection refused, name not found, a stream lost for good
EXIT_HTTP = 6  # the server answered 4xx/5xx (its detail is printed), or something unreadable
EXIT_CTRL_C = 130  # 128 + SIGINT, what a shell reports for a command ended by Ctrl-C
EXIT_HELP = (
    "exit codes: 0 success, 1 the run failed (error), 2 usage error, 3 the run timed out, "
    "4 the run was interrupted (cancelled), 5 server unreachable, 6 HTTP error, 130 Ctrl-C"
)
# Reconnects of a followed stream before giving up (each resumes by Last-Event-ID).
RECONNECTS = 5
# Seconds before rejoining a stream that closed without `end` while the run goes on.
RESUME_PAUSE = 0.2
# Characters of an error body worth a line on stderr (a proxy's HTML page is not).
DETAIL_CHARS = 300


class ClientError(Exception):
    """Something to tell the user in one line, with the exit code it ends with."""

    def __init__(self, message: str, code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.code = code


class _Detached(KeyboardInterrupt):
    """Ctrl-C while following or waiting for a run: the run goes on on the server."""

    def __init__(self, run_id: str) -> None:
        super().__init__(run_id)
        self.run_id = run_id


TOKEN_HELP = (
    "bearer token, sent as 'Authorization: Bearer' (default $RUNYARD_TOKEN; "
    "prefer the variable: a flag shows in the process list)"
)
RUN_THREAD_HELP = (
    "the run's thread: skips a lookup; needed by servers without GET /runs/ID (langgraph dev)"
)
FROM_HELP = (
    "only events after this id (as printed: an integer, or any string; sent as Last-Event-ID)"
)


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    def common(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.epilog = EXIT_HELP
        url = os.environ.get("RUNYARD_URL", DEFAULT_URL)
        p.add_argument(
            "--url", default=url, help=f"the server (default $RUNYARD_URL or {DEFAULT_URL})"
        )
        p.add_argument("--token", default=os.environ.get("RUNYARD_TOKEN") or None, help=TOKEN_HELP)
        p.add_argument("--json", action="store_true", help="machine-readable output")
        return p

    def thread_of_run(p: argparse.ArgumentParser) -> None:
        p.add_argument("--thread", help=RUN_THREAD_HELP)

    p = common(sub.add_parser("run", help="start a run"))
    p.add_argument("agent", help="the agent (assistant id)")
    p.add_argument("--input", default="{}", help="the input, as JSON (default {})")
    p.add_argument("--thread", help="run on this thread (default: a new one)")
    p.add_argument("--follow", action="store_true", help="stream its events until it ends")
    p = common(sub.add_parser("stream", help="follow a run's events (replays from the start)"))
    p.add_argument("run_id", help="the run")
    p.add_argument("--from", dest="after", metavar="EVENT_ID", help=FROM_HELP)
    thread_of_run(p)
    p = common(sub.add_parser("wait", help="wait for a run to end; print its output"))
    p.add_argument("run_id", help="the run")
    thread_of_run(p)
    p = common(sub.add_parser("cancel", help="cancel a run; exit with its final status"))
    p.add_argument("run_id", help="the run")
    thread_of_run(p)
    p = common(sub.add_parser("runs", help="list runs, newest first"))
    p.add_argument("--thread", help="only this thread's runs")
    p.add_argument("--status", help="only runs with this status")
    p.add_argument("--limit", type=int, default=20, help="at most this many (default 20)")
    p = common(sub.add_parser("threads", help="list threads, newest first"))
    p.add_argument("--limit", type=int, default=20, help="at most this many (default 20)")


def run_command(
    args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None
) -> int:
    """Run one client command; every failure is one line on ``err`` and an exit code."""
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    try:
        with httpx.Client(
            base_url=_base_url(args.url),
            headers=_auth(args.token),
            timeout=httpx.Timeout(30, read=None),
        ) as http:
            return _COMMANDS[args.command](http, args, out)
    except ClientError as exc:
        print(f"runyard: {exc}", file=err)
        return exc.code
    except httpx.TransportError as exc:
        reason = str(exc) or exc.__class__.__name__
        print(f"runyard: cannot reach {args.url}: {reason}", file=err)
        return EXIT_UNREACHABLE
    except _Detached as exc:
        print(f"runyard: interrupted; run {exc.run_id} goes on "
              f"(runyard cancel {exc.run_id} stops it)", file=err)  # fmt: skip
        return EXIT_CTRL_C
    except KeyboardInterrupt:
        print("runyard: interrupted", file=err)
        return EXIT_CTRL_C


def _base_url(url: str) -> httpx.URL:
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise ClientError(f"--url {url!r}: {exc}") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ClientError(f"--url {url!r} is not an http:// or https:// address")
    return parsed


def _auth(token: str | None) -> dict[str, str]:
    if not token:
        return {}
    if not (token.isascii() and token.isprintable()):
        raise ClientError("--token (or RUNYARD_TOKEN) must be printable ASCII")
    return {"Authorization": f"Bearer {token}"}


def _check(response: httpx.Response) -> Any:
    """The answer's JSON, or a :class:`ClientError` with the server's ``detail``."""
    if response.is_success:
        try:
            return response.json() if response.content else None
        except ValueError:
            raise ClientError(f"the server's answer is not JSON (HTTP {response.status_code})",
                              EXIT_HTTP) from None  # fmt: skip
    try:
        detail = response.json().get("detail", response.text)
    except (ValueError, AttributeError):
        detail = response.text
    if not isinstance(detail, str):
        detail = json.dumps(detail, ensure_ascii=False)  # FastAPI's 422: a list of problems
    detail = " ".join(detail.split())[:DETAIL_CHARS] or response.reason_phrase
    if response.status_code == 401:
        sent = "Authorization" in response.request.headers
        detail += "; the token was refused" if sent else "; pass --token or set RUNYARD_TOKEN"
    raise ClientError(f"{detail} (HTTP {response.status_code})", EXIT_HTTP)


def _path(*parts: str) -> str:
    return "/" + "/".join(quote(part, safe="") for part in parts)


def _run(http: httpx.Client, run_id: str, thread_id: str | None = None) -> dict[str, Any]:
    path = _path("threads", thread_id, "runs", run_id) if thread_id else _path("runs", run_id)
    run = _check(http.get(path))
    if not isinstance(run, dict) or "status" not in run:
        raise ClientError(f"the server's answer for run {run_id} is not a run", EXIT_HTTP)
    run.setdefault("run_id", run_id)
    if thread_id:
        run.setdefault("thread_id", thread_id)
    return run


def _emit(out: TextIO, args: argparse.Namespace, value: Any, text: str) -> None:
    print(json.dumps(value) if args.json else text, file=out, flush=True)


def _exit_for(run: dict[str, Any]) -> int:
    return EXIT_CODES.get(run["status"], EXIT_HTTP)


def _describe(run: dict[str, Any]) -> str:
    text = f"run {run['run_id']} {run['status']}"
    if run.get("cancel_reason"):
        text += f" ({run['cancel_reason']})"
    error = run.get("error")
    if isinstance(error, dict):
        text += f": {error.get('error')}: {error.get('message')}"
    return text


# -- commands -----------------------------------------------------------------


def _cmd_run(http: httpx.Client, args: argparse.Namespace, out: TextIO) -> int:
    try:
        value = json.loads(args.input)
    except ValueError:
        raise ClientError("--input is not valid JSON") from None
    path = _path("threads", args.thread, "runs") if args.thread else "/runs"
    body = {"assistant_id": args.agent, "input": value, "on_disconnect": "continue"}
    run = _check(http.post(path, json=body))
    if not args.follow:
        _emit(out, args, run, f"started run {run['run_id']} on thread {run['thread_id']}")
        return 0
    if not args.json:
        print(f"started run {run['run_id']} on thread {run['thread_id']}", file=out, flush=True)
    return _follow(http, args, out, run, after=None)


def _cmd_stream(http: httpx.Client, args: argparse.Namespace, out: TextIO) -> int:
    run = _run(http, args.run_id, args.thread)
    return _follow(http, args, out, run, after=args.after)


def _cmd_wait(http: httpx.Client, args: argparse.Namespace, out: TextIO) -> int:
    run = _run(http, args.run_id, args.thread)
    try:
        output = _check(http.get(_path("threads", run["thread_id"], "runs", run["run_id"], "join")))
    except KeyboardInterrupt:
        raise _Detached(run["run_id"]) from None
    run = _run(http, run["run_id"], run["thread_id"])
    if args.json:
        _emit(out, args, {"run": run, "output": output}, "")
    else:
        print(_describe(run), file=out)
        if run["status"] == "success":
            print(json.dumps(output, indent=2, ensure_ascii=False), file=out)
    return _exit_for(run)


def _cmd_cancel(http: httpx.Client, args: argparse.Namespace, out: TextIO) -> int:
    run = _run(http, args.run_id, args.thread)
    path = _path("threads", run["thread_id"], "runs", run["run_id"], "cancel")
    _check(http.post(path, params={"wait": 1}))
    # Read it back: some servers answer the cancel with no body; this is the final state.
    run = _run(http, run["run_id"], run["thread_id"])
    _emit(out, args, run, _describe(run))
    return _exit_for(run)


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
    path = _path("threads", args.thread, "runs") if args.thread else "/runs"
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
    after: EventId | None,
) -> int:
    """Print the run's events until ``end``, resuming by Last-Event-ID after a drop.

    Ctrl-C ends the line on a terminal and raises :class:`_Detached`.
    """
    progress = Progress(out, enabled=not args.json and out.isatty(), run_id=run["run_id"])
    try:
        final = _events(http, args, out, progress, run, after)
    except KeyboardInterrupt:
        raise _Detached(run["run_id"]) from None
    finally:
        progress.done()
    if not args.json:
        print(_describe(final), file=out)
    return _exit_for(final)


def _events(
    http: httpx.Client,
    args: argparse.Namespace,
    out: TextIO,
    progress: Progress,
    run: dict[str, Any],
    after: EventId | None,
) -> dict[str, Any]:
    """Follow the stream to its end; the run's final state."""
    run_id, thread_id = run["run_id"], run["thread_id"]
    path = _path("threads", thread_id, "runs", run_id, "stream")
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
                for ident, event, data in frames(response.iter_lines()):
                    tries = 0
                    if ident is not None:
                        last = ident
                    if args.json:
                        _emit(out, args, {"id": ident, "event": event, "data": data}, "")
                    else:
                        progress.event(ident, event, data)
                    if event == "end":
                        return _run(http, run_id, thread_id)
        except httpx.TransportError:
            tries += 1
            if tries > RECONNECTS:
                raise
            time.sleep(min(2**tries * 0.25, 5))
            continue
        # The stream closed without end (a restart, a proxy): the run tells what to do.
        if _run(http, run_id, thread_id)["status"] not in ("pending", "running"):
            break
        time.sleep(RESUME_PAUSE)
    return _run(http, run_id, thread_id)
