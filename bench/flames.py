"""py-spy profiles of a server during a workload: a flame graph and a summary.

``record`` samples a process (``py-spy record --gil``) while a workload runs,
twice: once as a flame graph (SVG), once as collapsed stacks that
:func:`summarize` turns into the shares of the time by owner, by package and
by function, written next to it as Markdown. Files go under ``bench-results/``.

Only the thread holding the GIL is sampled: py-spy counts a thread waiting for
the GIL as busy, and trio's worker threads wait for it after every hand-over
(a default-mode profile of G1 showed twice the process's CPU time; ``--gil``
matches it within 10%). SQLite's own work outside the GIL is not counted.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

RATE = (
    200  # samples per second; py-spy pauses the process for each (--nonblocking reads torn stacks)
)
STOP_WAIT = 60  # seconds py-spy may take to write its output after SIGINT
FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^:()]+)(?::\d+)?\)$")

# Packages whose frames take the blame for the trio and standard-library time
# they cause: a sample is charged to the nearest of them on its stack.
OWNERS = (
    "runyard",
    "langgraph",
    "langchain_core",
    "trio_asyncio",
    "hypercorn",
    "quart",
    "quart_trio",
    "h11",
    "sqlite_utils",
)
SCHEDULER = ("unrolled_run", "run")  # trio's run loop: tasks and I/O polling start below it
WORKER_THREAD = "WorkerThread._work"
ROOTS = (
    "_run_module_as_main",
    "Thread._bootstrap",
)  # where a complete stack starts  # the root of trio's to_thread workers (SQLite here)


async def record(
    pid: int, name: str, folder: Path, workload: Callable[[], Awaitable[Any]]
) -> dict[str, Path]:
    """Run ``workload`` twice under ``py-spy record --pid``: SVG flame graph, then raw stacks."""
    spy = shutil.which("py-spy", path=f"{Path(sys.executable).parent}{os.pathsep}{os.defpath}")
    if spy is None:
        raise RuntimeError("py-spy is not installed (nox -s bench -- --profile installs it)")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out: dict[str, Path] = {}
    for fmt, ext in (("flamegraph", "svg"), ("raw", "txt")):
        path = folder / f"flame-{name}-{stamp}.{ext}"
        cmd = [spy, "record", "--pid", str(pid), "--rate", str(RATE), "--format", fmt]
        cmd += ["--full-filenames", "--gil"]
        proc = subprocess.Popen([*cmd, "--output", str(path)])
        try:
            await asyncio.sleep(1)  # py-spy attaches before the workload starts
            await workload()
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(STOP_WAIT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        out[fmt] = path
    out["summary"] = summarize(out["raw"], folder / f"flame-{name}-{stamp}.md", name)
    return out


def _split(frame: str) -> tuple[str, str]:
    match = FRAME.match(frame)
    if match is None:
        return frame, ""
    return match["func"], match["file"]


def _package(file: str) -> str:
    """``.../site-packages/trio/_core/_run.py`` -> ``trio``; stdlib ``contextlib.py`` -> ``contextlib``."""
    if file.startswith("<"):
        return "(frozen or generated)"
    for marker in ("/site-packages/", "/src/"):
        if marker in file:
            return file.rsplit(marker, 1)[1].split("/", 1)[0].removesuffix(".py")
    return file.rsplit("/python3.", 1)[-1].split("/", 1)[-1].split("/", 1)[0].removesuffix(".py")


def _short(file: str) -> str:
    for marker in ("/site-packages/", "/src/"):
        if marker in file:
            return file.rsplit(marker, 1)[1]
    return file.rsplit("/python3.", 1)[-1].split("/", 1)[-1]


def _owner(frames: list[tuple[str, str]]) -> str:
    """Who a sample is charged to: the nearest owner package from the leaf up."""
    if any(func == WORKER_THREAD for func, _ in frames):
        return "worker threads (the store's SQLite calls)"
    for func, file in reversed(frames):
        if func in SCHEDULER and _package(file) == "trio":  # above: the command line
            break
        package = _package(file)
        if package in OWNERS:
            return package
    return f"{_package(frames[-1][1])} (no owner below trio's scheduler)"


def summarize(raw: Path, out: Path, name: str, top: int = 30) -> Path:
    """Shares of the samples by owner, by package (self time) and by function."""
    stacks: list[tuple[list[tuple[str, str]], int]] = []
    torn = 0  # samples whose stack does not start at a thread's root
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, samples = line.rpartition(" ")
        if not (stack and samples.isdigit()):
            continue
        frames = [_split(f) for f in stack.split(";")]
        if frames[0][0] not in ROOTS:
            torn += int(samples)
            continue
        stacks.append((frames, int(samples)))
    total = sum(c for _, c in stacks) or 1
    owners: Counter[str] = Counter()
    by_package: Counter[str] = Counter()
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    for frames, count in stacks:
        func, file = frames[-1]
        owners[_owner(frames)] += count
        by_package[_package(file)] += count
        self_time[f"{func} ({_short(file)})"] += count
        for key in {f"{f} ({_short(p)})" for f, p in frames}:
            inclusive[key] += count

    def table(
        title: str, counter: Counter[str], rows: int | None, quote: bool = False
    ) -> list[str]:
        head = ["", f"## {title}", "", "| | share |", "|---|---|"]
        q = "`" if quote else ""
        return head + [f"| {q}{k}{q} | {v / total:.1%} |" for k, v in counter.most_common(rows)]

    lines = [f"# py-spy: {name}", "", f"{total} samples of the GIL's holder at {RATE}/s"]
    lines[-1] += f" ({torn} more left out: their stacks were incomplete)."
    lines += table(
        "By owner (trio and stdlib time charged to the nearest owner calling it)", owners, None
    )
    lines += table("Self time by package", by_package, None)
    lines += table("Self time by function", self_time, top, quote=True)
    lines += table("Total time by function (itself and what it calls)", inclusive, 3 * top, True)
    out.write_text("\n".join(lines) + "\n")
    return out
