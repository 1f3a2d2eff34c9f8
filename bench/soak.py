"""w10, the churn soak (issue 18): mixed work at a steady rate for a long time.

Every second the driver starts :data:`RATE` operations, in turn: a short run
waited for (``/runs/wait``), a token stream that disconnects after a few
events and resumes by ``Last-Event-ID`` (checked for gaps and duplicates), a
run cancelled while it streams, and a run interrupted by a newer run on its
thread (``multitask_strategy=interrupt``). Each minute it samples the
server's RSS, open descriptors, SQLite file and WAL sizes and the p99 of the
waits and of time to first event, then plots them (PNG) and judges: RSS and
descriptors grow under 10% after warm-up, the WAL stays bounded, p99 stays
within 2x of its first value after warm-up, no operation failed.

    nox -s soak                                   # 30 minutes
    python bench/soak.py --minutes 3 --interval 20  # a quick try
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bench
import capacity
import httpx

MINUTES = 30.0  # how long the soak runs
INTERVAL = 60.0  # seconds between samples
RATE = 8  # operations started a second
WARM_UP = 2  # samples before the baseline the growth is judged against
MAX_GROWTH = 0.10  # RSS and descriptors, last sample against the baseline
MAX_WAL_MIB = 64.0  # the WAL must stay under this (checkpointing works)
MAX_P99_DRIFT = 2.0  # p99 of the last sample against the baseline's
PLOT = bench.ROOT / "docs" / "capacity-soak.png"


@dataclass
class Window:
    """What happened since the last sample."""

    waits: list[float] = field(default_factory=list)  # seconds, /runs/wait of a 0.1 s run
    first: list[float] = field(default_factory=list)  # seconds to a stream's first token
    done: int = 0
    failures: list[str] = field(default_factory=list)


class Soak:
    def __init__(self, target: bench.Target, client: httpx.AsyncClient) -> None:
        self.target = target
        self.client = client
        self.window = Window()
        self.samples: list[dict[str, Any]] = []

    async def short_wait(self) -> None:
        began = time.monotonic()
        r = await self.client.post(
            "/runs/wait", json={"assistant_id": "sleepy", "input": {"delay": 0.1}}
        )
        assert r.json() == {"done": 1}, r.text
        self.window.waits.append(time.monotonic() - began)

    async def stream_and_resume(self) -> None:
        """A stream dropped after 5 tokens, then joined again from the last id seen:
        every token once, ids increasing, one ``end``."""
        body = {"assistant_id": "tokens", "input": {"n": 40, "delay": 0.02}, "stream_mode": ["custom"]}  # fmt: skip
        ids: list[int] = []
        names: list[str] = []
        began = time.monotonic()
        async with self.client.stream("POST", "/runs/stream", json=body) as r:
            location = r.headers["Location"]
            async for line in r.aiter_lines():
                if line.startswith("event: "):
                    names.append(line[7:])
                elif line.startswith("id: "):
                    ids.append(int(line[4:]))
                    if len(ids) == 2:
                        self.window.first.append(time.monotonic() - began)
                    if len(ids) == 6:
                        break
        headers = {"Last-Event-ID": str(ids[-1])}
        async with self.client.stream("GET", location, headers=headers) as r:
            async for line in r.aiter_lines():
                if line.startswith("event: "):
                    names.append(line[7:])
                elif line.startswith("id: "):
                    ids.append(int(line[4:]))
        assert ids == sorted(set(ids)), f"ids {ids}"
        assert ids[0] == 0, f"ids {ids}"
        assert names.count("custom") == 40, f"events {names}"
        assert names[-1] == "end", f"events {names}"

    async def cancel_streaming(self) -> None:
        run = (
            await self.client.post("/runs", json={"assistant_id": "tokens", "input": {"n": 1000}})
        ).json()
        await asyncio.sleep(0.2)
        path = f"/threads/{run['thread_id']}/runs/{run['run_id']}"
        r = await self.client.post(f"{path}/cancel", params={"wait": "true"})
        assert r.json()["status"] == "interrupted", r.text

    async def interrupt(self) -> None:
        thread = (await self.client.post("/threads", json={})).json()["thread_id"]
        runs = f"/threads/{thread}/runs"
        first = (
            await self.client.post(runs, json={"assistant_id": "sleepy", "input": {"delay": 5}})
        ).json()
        await asyncio.sleep(0.1)
        second = {"assistant_id": "sleepy", "input": {"delay": 0.05}, "multitask_strategy": "interrupt"}  # fmt: skip
        r = await self.client.post(f"{runs}/wait", json=second)
        assert r.json() == {"done": 1}, r.text
        old = (await self.client.get(f"{runs}/{first['run_id']}")).json()
        assert old["status"] == "interrupted", old

    async def one(self, op: Callable[[], Awaitable[None]]) -> None:
        try:
            await op()
            self.window.done += 1
        except Exception as exc:  # a failed operation is a finding, not a crash
            self.window.failures.append(f"{op.__name__}: {type(exc).__name__}: {exc}"[:300])

    def sample(self, at: float) -> dict[str, Any]:
        assert self.target.proc is not None
        pid, w = self.target.proc.pid, self.window
        self.window = Window()
        db = Path(self.target.db)
        wal = db.with_name(db.name + "-wal")
        row = {
            "minute": at / 60,
            "rss_mib": self.target.rss_mib(),
            "fds": len(os.listdir(f"/proc/{pid}/fd")),
            "db_mib": db.stat().st_size / 2**20,
            "wal_mib": wal.stat().st_size / 2**20 if wal.exists() else 0.0,
            "wait_p99_ms": bench.pct(w.waits, 0.99) * 1000 if w.waits else float("nan"),
            "first_p99_ms": bench.pct(w.first, 0.99) * 1000 if w.first else float("nan"),
            "operations": w.done,
            "failures": w.failures[:5],
            "failed": len(w.failures),
        }
        self.samples.append(row)
        print(json.dumps(row), flush=True)
        return row

    async def run(self, minutes: float, interval: float, rate: int) -> None:
        ops = itertools.cycle(
            [self.short_wait, self.stream_and_resume, self.cancel_streaming, self.interrupt]
        )
        began = time.monotonic()
        next_sample = began + interval
        tasks: set[asyncio.Task[None]] = set()
        tick = 0
        while time.monotonic() < began + minutes * 60:
            for _ in range(rate):
                task = asyncio.create_task(self.one(next(ops)))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            tick += 1
            await asyncio.sleep(max(0.0, began + tick - time.monotonic()))
            if time.monotonic() >= next_sample:
                self.sample(time.monotonic() - began)
                next_sample += interval
        await asyncio.gather(*tasks)


def verdict(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Flat after warm-up: growth of RSS and descriptors, WAL bound, p99 drift, failures."""
    base = samples[min(WARM_UP, len(samples) - 1)]
    last = samples[-1]

    def growth(key: str) -> float:
        return float(last[key] / base[key] - 1)

    p99 = last["wait_p99_ms"] / base["wait_p99_ms"]
    out = {
        "rss_growth": growth("rss_mib"),
        "fd_growth": growth("fds"),
        "wal_max_mib": max(s["wal_mib"] for s in samples),
        "wait_p99_drift": p99,
        "failed": sum(s["failed"] for s in samples),
    }
    out["flat"] = bool(
        out["rss_growth"] < MAX_GROWTH
        and out["fd_growth"] < MAX_GROWTH
        and out["wal_max_mib"] < MAX_WAL_MIB
        and p99 < MAX_P99_DRIFT
        and out["failed"] == 0
    )
    return out


def plot(samples: list[dict[str, Any]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    minutes = [s["minute"] for s in samples]
    panels = [
        ("RSS (MiB)", ["rss_mib"]),
        ("open descriptors", ["fds"]),
        ("SQLite (MiB)", ["db_mib", "wal_mib"]),
        ("p99 (ms)", ["wait_p99_ms", "first_p99_ms"]),
    ]
    fig, axes = plt.subplots(2, 2, figsize=(10, 6.5), sharex=True)
    for ax, (label, keys) in zip(axes.flat, panels, strict=True):
        for key in keys:
            ax.plot(minutes, [s[key] for s in samples], marker="o", ms=3, label=key)
        ax.set_ylabel(label)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        if len(keys) > 1:
            ax.legend(fontsize=8)
    for ax in axes[1]:
        ax.set_xlabel("minutes")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


async def soak(args: argparse.Namespace) -> dict[str, Any]:
    target = capacity.runyard_server("runyard-soak", args.source)
    await target.start()
    try:
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=64)
        async with httpx.AsyncClient(base_url=target.url, timeout=120, limits=limits) as client:
            s = Soak(target, client)
            await s.run(args.minutes, args.interval, args.rate)
            samples = s.samples
    finally:
        bench.stop_if_running(target)
    return {"samples": samples, "verdict": verdict(samples)}


def main(argv: list[str]) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--minutes", type=float, default=MINUTES)
    p.add_argument("--interval", type=float, default=INTERVAL, help="seconds between samples")
    p.add_argument("--rate", type=int, default=RATE, help="operations started a second")
    p.add_argument("--source", type=Path, help="serve runyard from this src folder")
    p.add_argument("--plot", type=Path, default=PLOT, help="where the PNG goes")
    args = p.parse_args(argv)
    bench.raise_file_limit()
    bench.RESULTS.mkdir(exist_ok=True)
    results = asyncio.run(soak(args))
    results["machine"] = bench.machine()
    results["args"] = {k: str(v) for k, v in vars(args).items()}
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = bench.RESULTS / f"soak-{stamp}.json"
    path.write_text(json.dumps(results, indent=2))
    title = f"w10 soak: {args.minutes:g} min, {args.rate} operations/s ({stamp})"
    plot(results["samples"], args.plot, title)
    print(f"verdict: {json.dumps(results['verdict'])}\nresults: {path}\nplot: {args.plot}")
    if not results["verdict"]["flat"]:
        raise SystemExit(1)


if __name__ == "__main__":
    main(sys.argv[1:])
