"""Replicas on one PostgreSQL: three against one, and the takeover after kill -9.

Starts a throw-away PostgreSQL (as ``on_postgres.py`` does, with its
durability) and, with ``--bus``, the tests' throw-away Redis on a unix socket
(``tests/redis.py``), once. Each round
then serves one replica, and three, each time fresh ``runyard serve --db
postgresql://...`` processes on a fresh database, and measures with the
client spreading its requests round-robin over them:

- workload 2: 50 runs of ``emitter`` x 1,000 events at once, each created
  through one replica (``POST /runs``) and streamed through the next
  (``GET .../stream``): with three, every stream crosses replicas;
- workload 3: 200 concurrent ``/runs/wait`` of ``sleepy`` 0.5 s from the
  minimal h11 client of ``bench.py`` (a third of them to each replica).

Around each workload it reads the CPU seconds of each group of processes
from ``/proc``: the replicas, PostgreSQL (the postmaster, its backends and
the backends it has reaped), Redis, this client, and the rest of the
machine, with the cores' idle and stolen time: where the CPU went when three
replicas are not 1.5x one.

Takeover: with three replicas, ``--kills`` times, a long run is started
through one replica and followed through the next; once its first event has
arrived the replica is killed with SIGKILL, and the clock runs until a
survivor answers the run as ``interrupted``/``restart`` and the stream has
delivered its ``end``. The killed replica is started again before the next
kill. Target: p99 under 10 s.

    python bench/replicas.py [--rounds 3] [--kills 20] [--only w2|w3|takeover]
                             [--bus | --no-bus] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import importlib.util
import json
import os
import random
import signal
import socket
import statistics
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bench
import httpx
import on_postgres
from langgraph_sdk import get_client

import pg  # the tests' throw-away server, on bench's path once on_postgres is imported

sys.path.insert(0, str(bench.ROOT))
from tests.redis import RedisServer, server_binary  # the tests' throw-away Redis
from tests.redis import unavailable as redis_unavailable

RATIO_TARGET = 1.5  # three replicas' throughput over one's, at least
TAKEOVER_TARGET = 10.0  # seconds from kill -9 to the run's end seen through a survivor, p99
REPLICAS = 3
W3_DELAY = 0.5  # seconds each waited run sleeps (workload 3)
# The run killed with its replica: long enough to outlive any takeover (events 0.1 s apart).
LONG_RUN = {"n": 10_000, "delay": 0.1}
GIVE_UP = 60.0  # seconds after a kill at which a takeover counts as never
# runyard.cluster.HEARTBEAT_SECONDS, not imported: importing runyard imports trio-asyncio,
# which would put this client's asyncio.run on its slower loop.
HEARTBEAT_SECONDS = 2.0
SAMPLE = 0.05  # seconds between CPU samples: the error on a workload's CPU window, each side
POLL = 0.05  # seconds between the survivor's answers read while waiting for a takeover
CLK_TCK = os.sysconf("SC_CLK_TCK")
SEED = 14


@dataclass
class Sizes:
    w2_runs: int = 50
    w2_events: int = 1000
    w3_runs: int = 200
    kills: int = 20


QUICK = Sizes(w2_runs=10, w2_events=200, w3_runs=30, kills=3)


# -- the servers ---------------------------------------------------------------------


def redis_pid(server: RedisServer) -> int:
    """The Redis server's process id, as it tells (``INFO server``)."""
    reply = b""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(str(server.socket))
        sock.sendall(b"INFO server\r\n")
        while b"process_id:" not in reply or not reply.partition(b"process_id:")[2].strip():
            reply += sock.recv(65536)
    return int(reply.partition(b"process_id:")[2].split()[0])


def replica(db: str, bus: str) -> bench.Target:
    """``runyard serve`` on ``db`` (and ``bus``), on a port of its own; not started."""
    target = bench.runyard()
    os.rmdir(Path(target.db).parent)  # bench's SQLite folder, unused here
    target.db = db
    target.cmd[target.cmd.index("--db") + 1] = db
    if bus:
        target.cmd += ["--bus", bus]
    target.name = "runyard-replica"
    return target


@contextlib.asynccontextmanager
async def replicas(count: int, db: str, bus: str) -> AsyncIterator[list[bench.Target]]:
    """``count`` replicas of ``db``, started (all at once) and stopped with SIGTERM."""
    started = [replica(db, bus) for _ in range(count)]
    try:
        await asyncio.gather(*(t.start() for t in started))
        yield started
    finally:
        for t in started:
            bench.stop_if_running(t)


# -- CPU, per group of processes ------------------------------------------------------


def process_cpu(pid: int | None, reaped: bool = False) -> float:
    """User + system seconds of a process, all its threads, and (``reaped``) of the
    children it has waited for; 0 once it is gone. Cheaper than ``bench.cpu_seconds``,
    which walks every thread's children: 5 ms a sample with three replicas."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    used = int(fields[11]) + int(fields[12])  # utime + stime
    if reaped:
        used += int(fields[13]) + int(fields[14])  # cutime + cstime
    return used / CLK_TCK


def postgres_cpu(postmaster: int) -> float:
    """The postmaster, its live processes, and the backends it has reaped."""
    try:
        children = Path(f"/proc/{postmaster}/task/{postmaster}/children").read_text().split()
    except OSError:
        return 0.0
    return process_cpu(postmaster, reaped=True) + sum(process_cpu(int(c)) for c in children)


def machine_cpu() -> dict[str, float]:
    """The machine's CPU seconds so far: busy (any process), idle (with iowait), stolen."""
    user, nice, system, idle, iowait, irq, softirq, steal = (
        int(v) / CLK_TCK for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]
    )
    return {"busy": user + nice + system + irq + softirq, "idle": idle + iowait, "stolen": steal}


@dataclass
class Processes:
    """The pids whose CPU is counted: replicas (changing), PostgreSQL, Redis."""

    postmaster: int
    redis: int | None
    runyard: list[int] = field(default_factory=list)

    def sample(self) -> dict[str, float]:
        whole = machine_cpu()
        return {
            "runyard": sum(process_cpu(pid, reaped=True) for pid in self.runyard),
            "postgres": postgres_cpu(self.postmaster),
            "redis": process_cpu(self.redis),
            "client": time.process_time(),
            **whole,
        }


class Timeline:
    """CPU samples every :data:`SAMPLE` seconds while :meth:`run` runs, to read the CPU of
    exactly the span a workload timed (bench's w3 warms up inside its call, off its clock).
    A sample reads about 30 files of ``/proc``, 1-2 ms: a few percent of a core, counted
    as the client's."""

    def __init__(self, procs: Processes) -> None:
        self.procs = procs
        self.samples: list[tuple[float, dict[str, float]]] = []

    async def run(self) -> None:
        while True:
            self.samples.append((time.monotonic(), self.procs.sample()))
            await asyncio.sleep(SAMPLE)

    def between(self, start: float, end: float) -> dict[str, float]:
        """CPU per group from the last sample at or before ``start`` to the first at or
        after ``end`` (call once a sample after ``end`` exists); ``window_s`` its length."""
        t0, before = max((s for s in self.samples if s[0] <= start), key=lambda s: s[0])
        t1, after = min((s for s in self.samples if s[0] >= end), key=lambda s: s[0])
        return {**spent(before, after), "window_s": t1 - t0}


def spent(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """CPU seconds per group between two samples; ``other``: the machine's busy time
    that none of the groups accounts for (other processes on this shared machine)."""
    used = {k: after[k] - before[k] for k in before}
    ours = used["runyard"] + used["postgres"] + used["redis"] + used["client"]
    used["other"] = max(0.0, used.pop("busy") - ours)
    return used


# -- workloads 2 and 3, round-robin -----------------------------------------------------


async def w2_across(urls: list[str], runs: int, n: int) -> dict[str, float]:
    """Workload 2: run i is created through replica i and streamed through replica i + 1."""
    clients = [get_client(url=url, api_key=None) for url in urls]

    async def one(i: int) -> int:
        made, through = clients[i % len(urls)], clients[(i + 1) % len(urls)]
        run = await made.runs.create(None, "emitter", input={"n": n, "delay": 0})
        got = 0
        stream = through.runs.join_stream(run["thread_id"], run["run_id"], stream_mode="custom")
        async for part in stream:
            got += part.event == "custom"
        return got

    began = time.monotonic()
    counts = await asyncio.gather(*(one(i) for i in range(runs)))
    took = time.monotonic() - began
    assert sum(counts) == runs * n, (sum(counts), runs * n)
    return {"events_per_s": sum(counts) / took, "wall_s": took}


async def w3_across(urls: list[str], runs: int) -> dict[str, float]:
    """Workload 3: ``bench.w3_plain_client`` against each replica at once, a share each.

    Each share first waits once alone (bench's warm-up), all at the same time,
    then starts its clock: the wall time is the longest share's.
    """
    shares = [runs // len(urls) + (i < runs % len(urls)) for i in range(len(urls))]
    parts = await asyncio.gather(
        *(
            bench.w3_plain_client(url, share, W3_DELAY)
            for url, share in zip(urls, shares, strict=True)
        )
    )
    wall = max(p["wall_s"] for p in parts)
    return {"waits_per_s": runs / wall, "wall_s": wall, "p99_s": max(p["p99_s"] for p in parts)}


async def followed(urls: list[str]) -> dict[str, float]:
    """Live events of other replicas' runs the replicas passed on, by source (``fanout``:
    pushed through Redis; ``store``: read by polling), from ``/metrics``. A stream's
    catch-up from the store, before it follows, is not counted."""
    counts: dict[str, float] = {"store": 0.0, "fanout": 0.0}
    async with httpx.AsyncClient() as c:
        for url in urls:
            for line in (await c.get(f"{url}/metrics")).text.splitlines():
                if line.startswith("runyard_followed_events_total{"):
                    source = line.split('source="', 1)[1].split('"', 1)[0]
                    counts[source] = counts.get(source, 0.0) + float(line.rsplit(" ", 1)[1])
    return counts


async def warm_up(urls: list[str]) -> None:
    """A small workload 2 and 3 first: imports, connections, the first queries' plans."""
    await w2_across(urls, 2 * len(urls), 10)
    await w3_across(urls, 2 * len(urls))


async def one_configuration(
    count: int, db: str, bus: str, procs: Processes, sizes: Sizes, only: str | None
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    async with replicas(count, db, bus) as started:
        urls = [t.url for t in started]
        procs.runyard = [t.proc.pid for t in started if t.proc is not None]
        await warm_up(urls)
        steps: dict[str, Callable[[], Awaitable[dict[str, float]]]] = {
            "w2": lambda: w2_across(urls, sizes.w2_runs, sizes.w2_events),
            "w3": lambda: w3_across(urls, sizes.w3_runs),
        }
        timeline = Timeline(procs)
        sampling = asyncio.create_task(timeline.run())
        await asyncio.sleep(SAMPLE)  # a first sample before any workload begins
        for name, step in steps.items():
            if only not in (None, name):
                continue
            counted = await followed(urls)
            result: dict[str, Any] = dict(await step())
            end = time.monotonic()
            await asyncio.sleep(2 * SAMPLE)  # a sample after the end
            result["cpu"] = timeline.between(end - result["wall_s"], end)
            result["followed"] = {k: v - counted[k] for k, v in (await followed(urls)).items()}
            out[name] = result
        sampling.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sampling
    return out


def throughput(
    server: pg.PostgresServer,
    bus: str,
    procs: Processes,
    sizes: Sizes,
    rounds: int,
    only: str | None,
) -> dict[str, Any]:
    runs: dict[str, list[dict[str, Any]]] = {"1": [], str(REPLICAS): []}
    for i in range(rounds):
        for count in (1, REPLICAS):
            db = server.new_database()
            result = asyncio.run(one_configuration(count, db, bus, procs, sizes, only))
            server.drop_database(db)
            runs[str(count)].append(result)
            print(f"  round {i + 1}, {count} replica(s): {json.dumps(result)}", flush=True)
    medians = {count: _medians(results) for count, results in runs.items()}
    one, many = medians["1"], medians[str(REPLICAS)]
    ratios = {}
    if "w2" in one:
        ratios["w2"] = many["w2"]["events_per_s"] / one["w2"]["events_per_s"]
    if "w3" in one:
        ratios["w3"] = many["w3"]["waits_per_s"] / one["w3"]["waits_per_s"]
    return {"medians": medians, "ratios": ratios, "runs": runs}


def _medians(results: list[dict[str, Any]]) -> dict[str, Any]:
    def median_of(items: list[dict[str, Any]]) -> dict[str, Any]:
        first = items[0]
        return {
            k: median_of([r[k] for r in items])
            if isinstance(first[k], dict)
            else statistics.median(r[k] for r in items)
            for k in first
        }

    return median_of(results)


# -- takeover --------------------------------------------------------------------------


async def takeover(started: list[bench.Target], victim: int, rng: random.Random) -> dict[str, Any]:
    """Kill replica ``victim`` under a long run; seconds until a survivor answers the run
    ``interrupted``/``restart`` and its stream has delivered the ``end``."""
    doomed, survivor = started[victim], started[(victim + 1) % len(started)]
    assert doomed.proc is not None
    async with httpx.AsyncClient(timeout=httpx.Timeout(GIVE_UP)) as c:
        answer = await c.post(
            f"{doomed.url}/runs", json={"assistant_id": "emitter", "input": LONG_RUN}
        )
        answer.raise_for_status()
        run = answer.json()
        path = f"/threads/{run['thread_id']}/runs/{run['run_id']}"
        first = asyncio.Event()
        ended: dict[str, Any] = {}

        async def follow() -> None:
            async with c.stream("GET", f"{survivor.url}{path}/stream") as r:
                r.raise_for_status()
                event = ""
                async for line in r.aiter_lines():
                    if line.startswith("event:"):
                        event = line[len("event:") :].strip()
                    elif line.startswith("data:") and event == "custom":
                        first.set()
                    elif line.startswith("data:") and event == "end":
                        ended["at"] = time.monotonic()
                        ended["status"] = json.loads(line[len("data:") :])["status"]
                        return

        following = asyncio.create_task(follow())
        await asyncio.wait_for(first.wait(), 30)
        await asyncio.sleep(rng.uniform(0, HEARTBEAT_SECONDS))  # any phase of the lease
        doomed.proc.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        doomed.proc.wait()
        row: dict[str, Any] = {}
        while time.monotonic() - killed < GIVE_UP:
            answer = await c.get(f"{survivor.url}{path}")
            seen = answer.json() if answer.status_code == 200 else {"status": "running"}
            if seen["status"] != "running":
                row = {"at": time.monotonic(), "status": seen["status"], "reason": seen["cancel_reason"]}  # fmt: skip
                break
            await asyncio.sleep(POLL)
        try:
            await asyncio.wait_for(following, max(1.0, GIVE_UP - (time.monotonic() - killed)))
        except TimeoutError:
            pass
    done = row.get("status") == "interrupted" and row.get("reason") == "restart"
    done = done and ended.get("status") == "interrupted"
    return {
        "takeover_s": max(row["at"], ended["at"]) - killed if done else float("inf"),
        "row_s": row["at"] - killed if row else float("inf"),
        "end_s": ended["at"] - killed if ended else float("inf"),
        "row": [row.get("status"), row.get("reason")],
        "end": ended.get("status"),
    }


async def takeovers(db: str, bus: str, kills: int) -> dict[str, Any]:
    rng = random.Random(SEED)
    times: list[dict[str, Any]] = []
    async with replicas(REPLICAS, db, bus) as started:
        for k in range(kills):
            victim = k % len(started)
            one = await takeover(started, victim, rng)
            times.append(one)
            print(f"  kill {k + 1}: {json.dumps(one)}", flush=True)
            started[victim] = replica(db, bus)  # the same count of replicas for the next
            await started[victim].start()
    took = [t["takeover_s"] for t in times]
    return {
        "p50_s": bench.pct(took, 0.5),
        "p99_s": bench.pct(took, 0.99),
        "max_s": max(took),
        "failed": sum(t == float("inf") for t in took),
        "kills": times,
    }


# -- the driver ------------------------------------------------------------------------


def measure(args: argparse.Namespace, sizes: Sizes, path: Path) -> dict[str, Any]:
    """Both parts; ``path`` gets the results so far after each (the other may fail)."""
    binaries = pg.bin_dir()
    if binaries is None:
        raise SystemExit("no PostgreSQL binaries (RUNYARD_PG_BIN or /usr/lib/postgresql/*/bin)")
    pg.SETTINGS.update(on_postgres.DURABILITY)
    result: dict[str, Any] = {"machine": bench.machine(), "bus": args.bus, "sizes": sizes.__dict__}
    with contextlib.ExitStack() as stack:
        server = pg.PostgresServer(binaries)
        stack.callback(server.stop)
        server.start()
        postmaster = int((server.data / "postmaster.pid").read_text().split()[0])
        bus, pid = "", None
        if args.bus:
            binary = server_binary()
            assert binary is not None
            redis = RedisServer(binary)
            stack.callback(redis.remove)
            redis.start()
            bus, pid = redis.url, redis_pid(redis)
        procs = Processes(postmaster, pid)
        if args.only in (None, "w2", "w3"):
            result.update(throughput(server, bus, procs, sizes, args.rounds, args.only))
            path.write_text(json.dumps(result, indent=2))
        if args.only in (None, "takeover"):
            result["takeover"] = asyncio.run(takeovers(server.new_database(), bus, sizes.kills))
    return result


def server_logs(since: float) -> collections.Counter[str]:
    """What the replicas of this run logged (warnings and worse), counted by level and
    event; a line that is not ``date time level event ...`` (a traceback) counts as such."""
    seen: collections.Counter[str] = collections.Counter()
    for path in bench.RESULTS.glob("runyard-replica-*.log"):
        if path.stat().st_mtime < since:
            continue
        for line in path.read_text(errors="replace").splitlines():
            words = line.split()
            is_entry = len(words) >= 4 and words[0][:2] == "20"
            seen[" ".join(words[2:4]) if is_entry else "(not a log entry)"] += 1
    return seen


def _bus_available() -> bool:
    """Whether runyard has its Redis fan-out and redis-server is here; runyard is looked
    up, not imported (importing it imports trio-asyncio, see HEARTBEAT_SECONDS)."""
    spec = importlib.util.find_spec("runyard")
    if spec is None or spec.origin is None:
        return False
    has_fanout = (Path(spec.origin).parent / "redis_fanout.py").exists()
    return has_fanout and redis_unavailable() is None


CPU_GROUPS = {"runyard": "runyard", "postgres": "PostgreSQL", "redis": "Redis",
              "client": "client", "other": "other processes", "idle": "idle", "stolen": "stolen"}  # fmt: skip


def median_round(rounds: list[dict[str, Any]], w: str, key: str) -> dict[str, Any]:
    """The round whose ``w`` throughput is the median (the lower one of an even count)."""
    ordered = sorted(rounds, key=lambda r: float(r[w][key]))
    result: dict[str, Any] = ordered[(len(ordered) - 1) // 2][w]
    return result


def tables(result: dict[str, Any], sizes: Sizes) -> str:
    lines: list[str] = []
    if "medians" in result:
        one, many = result["medians"]["1"], result["medians"][str(REPLICAS)]
        lines += ["| workload | 1 replica | 3 replicas | 3 : 1 |", "|---|---|---|---|"]
        if "w2" in one:
            lines.append(
                f"| 2. {sizes.w2_runs} runs x {sizes.w2_events:,} events, streamed through the"
                f" next replica | {one['w2']['events_per_s']:,.0f} events/s"
                f" | {many['w2']['events_per_s']:,.0f} events/s | {result['ratios']['w2']:.2f}x |"
            )
        if "w3" in one:
            lines.append(
                f"| 3. {sizes.w3_runs} waits of a {W3_DELAY} s run (h11 client)"
                f" | {one['w3']['waits_per_s']:,.0f} waits/s (wall {one['w3']['wall_s']:.2f} s)"
                f" | {many['w3']['waits_per_s']:,.0f} waits/s (wall {many['w3']['wall_s']:.2f} s)"
                f" | {result['ratios']['w3']:.2f}x |"
            )
        lines += ["", "CPU seconds over each workload's timed span, in its median round, by"
                  f" group ({os.cpu_count()} cores: {os.cpu_count()} x the window in all); per"
                  " unit: what runyard, PostgreSQL, Redis and the client used together, per"
                  " event (w2) or wait (w3).", "",
                  "| workload | replicas | window | " + " | ".join(CPU_GROUPS.values())
                  + " | per unit |", "|---|---|---|" + "---|" * (len(CPU_GROUPS) + 1)]  # fmt: skip
        units = {"w2": sizes.w2_runs * sizes.w2_events, "w3": sizes.w3_runs}
        for w, key in (("w2", "events_per_s"), ("w3", "waits_per_s")):
            for count in ("1", str(REPLICAS)):
                if w not in one:
                    continue
                cpu = median_round(result["runs"][count], w, key)["cpu"]
                cells = " | ".join(f"{cpu[k]:.2f}" for k in CPU_GROUPS)
                ours = sum(cpu[k] for k in ("runyard", "postgres", "redis", "client")) / units[w]
                per = f"{ours * 1e6:.0f} µs" if w == "w2" else f"{ours * 1e3:.1f} ms"
                lines.append(f"| {w} | {count} | {cpu['window_s']:.2f} s | {cells} | {per} |")
        if "w2" in many:
            got = median_round(result["runs"][str(REPLICAS)], "w2", "events_per_s")["followed"]
            total = sizes.w2_runs * sizes.w2_events
            lines += ["", f"w2, {REPLICAS} replicas (median round): of the {total:,} events,"
                      f" {got['fanout']:,.0f} reached the streaming replica through Redis,"
                      f" {got['store']:,.0f} by its store poll, the rest read back from the"
                      " store by streams catching up."]  # fmt: skip
    if "takeover" in result:
        t = result["takeover"]
        verdict = "PASS" if t["p99_s"] < TAKEOVER_TARGET and not t["failed"] else "FAIL"
        lines += [
            "",
            f"Takeover after kill -9, {len(t['kills'])} kills, {REPLICAS} replicas:"
            f" p50 {t['p50_s']:.2f} s, p99 {t['p99_s']:.2f} s, max {t['max_s']:.2f} s,"
            f" {t['failed']} not taken over: {verdict} (target p99 < {TAKEOVER_TARGET:.0f} s)",
        ]
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--kills", type=int, default=Sizes.kills)
    p.add_argument("--only", choices=["w2", "w3", "takeover"])
    p.add_argument(
        "--bus", action=argparse.BooleanOptionalAction, default=None,
        help="live events through Redis (default: when runyard.redis_fanout and redis-server exist)",
    )  # fmt: skip
    p.add_argument("--quick", action="store_true", help="small sizes, one round, 3 kills")
    args = p.parse_args(argv)
    if args.bus is None:
        args.bus = _bus_available()
    bench.raise_file_limit()
    bench.RESULTS.mkdir(exist_ok=True)
    sizes = QUICK if args.quick else Sizes(kills=args.kills)
    if args.quick:
        args.rounds = 1
    began, since = time.monotonic(), time.time()
    path = bench.RESULTS / f"replicas-{time.strftime('%Y%m%d-%H%M%S')}.json"
    result = measure(args, sizes, path)
    result["took_s"] = time.monotonic() - began
    result["server_logs"] = server_logs(since)
    path.write_text(json.dumps(result, indent=2))
    print(f"bus: {'Redis on a unix socket' if args.bus else 'none (streams poll PostgreSQL)'}")
    print(tables(result, sizes))
    ratios = result.get("ratios", {})
    for w, ratio in ratios.items():
        verdict = "met" if ratio >= RATIO_TARGET else "NOT met"
        print(f"{w}: 3 replicas / 1 = {ratio:.2f}x, target {RATIO_TARGET}x {verdict}")
    logged = ", ".join(f"{n} x {what}" for what, n in result["server_logs"].most_common())
    print(f"replicas logged: {logged or 'nothing'} (bench-results/runyard-replica-*.log)")
    print(f"results: {path} ({result['took_s'] / 60:.1f} min)")


if __name__ == "__main__":
    main(sys.argv[1:])
