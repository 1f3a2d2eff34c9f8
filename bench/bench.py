"""runyard benchmarks: the workloads of docs/benchmarks.md, driven over HTTP with
the official langgraph-sdk client against a real ``runyard serve`` on 127.0.0.1.

    nox -s bench                       # runyard, and the bare-SSE ceiling
    nox -s bench -- --peer langgraph   # also langgraph dev, side by side
    nox -s bench -- --graphs --peer langgraph --peer aegra   # the graph part alone
    nox -s bench -- --graphs --profile # and py-spy flame graphs of runyard
    python bench/bench.py --quick      # a smoke run with small sizes

Results: a JSON file under bench-results/ and the tables in docs/benchmarks.md.
Every figure is the median of --repeat runs (3 by default).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aegra
import flames
import graph_workloads as gw
import httpx
from langgraph_sdk import get_client

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench-results"
DOC = ROOT / "docs" / "benchmarks.md"
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"
GRAPHS_BEGIN, GRAPHS_END = "<!-- bench-graphs:begin -->", "<!-- bench-graphs:end -->"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Target:
    """A server under test: how to start it and its URL."""

    name: str
    cmd: list[str]
    port: int
    env: dict[str, str] = field(default_factory=dict)
    cwd: str | None = None
    proc: subprocess.Popen[bytes] | None = None
    db: str = ""
    ready: str = "/ok"  # answers 200 once the server serves

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        log = open(RESULTS / f"{self.name}-{self.port}.log", "wb")
        self.proc = subprocess.Popen(
            self.cmd,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **self.env},
            cwd=self.cwd,
        )
        deadline = time.monotonic() + 120
        async with httpx.AsyncClient() as c:
            while time.monotonic() < deadline:
                try:
                    if (await c.get(f"{self.url}{self.ready}")).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.1)
        raise RuntimeError(f"{self.name} did not start; see bench-results/*.log")

    def stop(self) -> float:
        """SIGTERM; return seconds to exit."""
        assert self.proc is not None
        began = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(120)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        return time.monotonic() - began

    def rss_mib(self) -> float:
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")


def runyard(durability: str = "events", langgraph_json: Path | None = None) -> Target:
    port = free_port()
    db = tempfile.mkdtemp(prefix="runyard-bench-") + "/bench.sqlite3"
    cmd = [sys.executable, "-m", "runyard.cli", "serve", "--port", str(port), "--db", db]
    if langgraph_json is not None:
        cmd += ["--langgraph-json", str(langgraph_json)]
    env = {
        "RUNYARD_DURABILITY": durability,
        "RUNYARD_LOG_LEVEL": "warning",
        "RUNYARD_GRACE": "10",
        "RUNYARD_MAX_ACTIVE_RUNS_PER_OWNER": "5000",
        "RUNYARD_MAX_SUBSCRIBERS_PER_RUN": "20000",
    }
    return Target(f"runyard-{durability}", cmd, port, env, db=db)


def ceiling() -> Target:
    port = free_port()
    return Target(
        "ceiling", [sys.executable, str(Path(__file__).with_name("ceiling.py")), str(port)], port
    )


PEER = Path(__file__).with_name("peer")  # the demo agents as graphs, for langgraph dev


def langgraph_peer(project: Path = PEER) -> Target:
    port = free_port()
    cmd = [str(Path(sys.executable).with_name("langgraph")), "dev", "--no-browser", "--no-reload", "--n-jobs-per-worker", "200",
           "--host", "127.0.0.1", "--port", str(port), "--config", str(project / "langgraph.json")]  # fmt: skip
    env = {
        "LANGGRAPH_CLI_NO_ANALYTICS": "1",
        "LANGGRAPH_NO_VERSION_CHECK": "true",
        "LANGSMITH_TRACING": "false",
        "LANGCHAIN_TRACING_V2": "false",
    }
    # langgraph dev resolves the graphs' paths from its working directory.
    return Target("langgraph-dev", cmd, port, env, cwd=str(project))


# -- workloads ----------------------------------------------------------------------


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def w1_one_stream(url: str, n: int) -> dict[str, float]:
    client = get_client(url=url, api_key=None)
    began = time.monotonic()
    count = 0
    async for part in client.runs.stream(None, "emitter", input={"n": n}, stream_mode="custom"):
        if part.event == "custom":
            count += 1
    took = time.monotonic() - began
    assert count == n, (count, n)
    return {"events_per_s": count / took}


async def w2_concurrent_streams(url: str, runs: int, n: int) -> dict[str, float]:
    client = get_client(url=url, api_key=None)

    async def one() -> int:
        got = 0
        async for part in client.runs.stream(None, "emitter", input={"n": n}, stream_mode="custom"):
            got += part.event == "custom"
        return got

    began = time.monotonic()
    counts = await asyncio.gather(*(one() for _ in range(runs)))
    took = time.monotonic() - began
    assert sum(counts) == runs * n
    return {"events_per_s": sum(counts) / took}


def sdk_client(url: str, pool: int) -> Any:
    """The official client with a connection pool of ``pool`` (get_client's is 100)."""
    from langgraph_sdk.client import LangGraphClient

    transport = httpx.AsyncHTTPTransport(retries=5, limits=httpx.Limits(max_connections=pool))
    timeout = httpx.Timeout(connect=5, read=300, write=300, pool=5)
    return LangGraphClient(httpx.AsyncClient(base_url=url, transport=transport, timeout=timeout))


def cpu_seconds(pid: int | None) -> float:
    """CPU time (user + system) of a process and its descendants so far; 0 if unknown."""
    if pid is None:
        return 0.0
    total = 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        for task in Path(f"/proc/{pid}/task").iterdir():
            for child in (task / "children").read_text().split():
                total += cpu_seconds(int(child))
    except OSError:
        pass
    return total


async def w3_concurrent_waits(
    url: str, runs: int, delay: float, pool: int | None = None, server_pid: int | None = None
) -> dict[str, float]:
    # get_client's pool holds 100 connections: 200 waits then run in two waves.
    client = get_client(url=url, api_key=None) if pool is None else sdk_client(url, pool)

    async def one() -> float:
        began = time.monotonic()
        result = await client.runs.wait(None, "sleepy", input={"delay": delay})
        assert isinstance(result, dict), result
        assert result.get("done") == 1, result  # langgraph dev answers the whole state
        return time.monotonic() - began

    try:
        return await _all_at_once(one, runs, server_pid)
    finally:
        await client.aclose()


async def w3_plain_client(
    url: str, runs: int, delay: float, server_pid: int | None = None
) -> dict[str, float]:
    """Workload 3 from a minimal HTTP/1.1 client (h11, a connection per wait):
    what the server does when the client costs next to nothing."""
    import h11

    port = int(url.rsplit(":", 1)[1])
    body = json.dumps({"assistant_id": "sleepy", "input": {"delay": delay}}).encode()
    headers = [
        ("Host", f"127.0.0.1:{port}"),
        ("Content-Type", "application/json"),
        ("Content-Length", str(len(body))),
        ("Connection", "close"),
    ]

    async def one() -> float:
        began = time.monotonic()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        conn = h11.Connection(h11.CLIENT)
        request = h11.Request(method="POST", target="/runs/wait", headers=headers)
        writer.write(
            conn.send(request) + conn.send(h11.Data(data=body)) + conn.send(h11.EndOfMessage())
        )
        status, chunks = 0, []
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await reader.read(65536))
            elif isinstance(event, h11.Response):
                status = event.status_code
            elif isinstance(event, h11.Data):
                chunks.append(event.data)
            elif isinstance(event, h11.EndOfMessage):
                break
        writer.close()
        result = json.loads(b"".join(chunks))
        assert status == 200, (status, result)
        assert result.get("done") == 1, result
        return time.monotonic() - began

    return await _all_at_once(one, runs, server_pid)


async def _all_at_once(
    one: Callable[[], Awaitable[float]], runs: int, server_pid: int | None
) -> dict[str, float]:
    """Run ``one`` ``runs`` times concurrently; wall time, latencies, CPU on both sides."""
    await one()  # what the client imports on its first call, before the clock starts
    server_cpu, client_cpu = cpu_seconds(server_pid), time.process_time()
    began = time.monotonic()
    times = await asyncio.gather(*(one() for _ in range(runs)))
    return {
        "wall_s": time.monotonic() - began,
        "p50_s": pct(times, 0.5),
        "p99_s": pct(times, 0.99),
        "client_cpu_s": time.process_time() - client_cpu,
        "server_cpu_s": cpu_seconds(server_pid) - server_cpu,
    }


async def w4_first_event(url: str, runs: int) -> dict[str, float]:
    client = get_client(url=url, api_key=None)
    latencies = []
    for _ in range(runs):
        began = time.monotonic()
        async for part in client.runs.stream(None, "emitter", input={"n": 1}, stream_mode="custom"):
            if part.event == "custom":
                latencies.append((time.monotonic() - began) * 1000)
    return {"p50_ms": pct(latencies, 0.5), "p99_ms": pct(latencies, 0.99)}


async def w5_fan_out(url: str, subscribers: int, n: int) -> dict[str, float]:
    client = get_client(url=url, api_key=None)
    run = await client.runs.create(None, "emitter", input={"n": n, "delay": 0.0002})

    async def follow(offset: int) -> int:
        got = 0
        async for _part in client.runs.join_stream(
            run["thread_id"], run["run_id"], last_event_id=str(offset) if offset else None
        ):
            got += 1
        return got

    began = time.monotonic()
    offsets = [i * n // subscribers for i in range(subscribers)]
    counts = await asyncio.gather(*(follow(o) for o in offsets))
    took = time.monotonic() - began
    return {"events_per_s": sum(counts) / took, "subscribers": subscribers}


async def w6_memory(target: Target, idle: int, runs: int) -> dict[str, float]:
    async with httpx.AsyncClient(base_url=target.url, timeout=60) as c:
        created = [
            (await c.post("/runs", json={"assistant_id": "sleepy", "input": {"delay": 600}})).json()
            for _ in range(runs)
        ]
    first = created[0]
    request = (
        f"GET /threads/{first['thread_id']}/runs/{first['run_id']}/stream HTTP/1.1\r\n"
        f"Host: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n"
    ).encode()
    writers = []
    for i in range(idle):
        _reader, writer = await asyncio.open_connection("127.0.0.1", target.port)
        writer.write(request)
        writers.append(writer)
        if i % 500 == 499:
            await writer.drain()
    await asyncio.sleep(2)
    rss = target.rss_mib()
    for writer in writers:
        writer.close()
    return {"rss_mib": rss, "idle_subscribers": idle, "runs": runs}


async def w7_shutdown(target: Target, runs: int) -> dict[str, float]:
    async with httpx.AsyncClient(base_url=target.url, timeout=60) as c:
        ids = [
            (
                await c.post("/runs", json={"assistant_id": "sleepy", "input": {"delay": 600}})
            ).json()["run_id"]
            for _ in range(runs)
        ]
    took = target.stop()
    conn = sqlite3.connect(target.db)
    statuses = dict(conn.execute("SELECT status, COUNT(*) FROM runs GROUP BY status").fetchall())
    conn.close()
    persisted = statuses.get("interrupted", 0) + statuses.get("success", 0)
    return {"exit_s": took, "runs": len(ids), "persisted": persisted}


# -- the driver ------------------------------------------------------------------------


@dataclass
class Sizes:
    w1_events: int = 10_000
    w2_runs: int = 50
    w2_events: int = 1000
    w3_runs: int = 200
    w4_runs: int = 100
    w5_subscribers: int = 100
    w5_events: int = 10_000
    w6_idle: int = 10_000
    w6_runs: int = 1000
    w7_runs: int = 1000


QUICK = Sizes(1000, 5, 200, 20, 10, 10, 1000, 200, 50, 50)


async def median(fn: Callable[[], Awaitable[dict[str, float]]], repeat: int) -> dict[str, float]:
    results = [await fn() for _ in range(repeat)]
    return {k: statistics.median(r[k] for r in results) for k in results[0]}


async def measure(target: Target, sizes: Sizes, repeat: int, full: bool) -> dict[str, Any]:
    url = target.url
    pid = None if target.proc is None else target.proc.pid
    out: dict[str, Any] = {}
    print(f"== {target.name}", flush=True)
    steps: list[tuple[str, Callable[[], Awaitable[dict[str, float]]]]] = [
        ("w1", lambda: w1_one_stream(url, sizes.w1_events)),
        ("w2", lambda: w2_concurrent_streams(url, sizes.w2_runs, sizes.w2_events)),
        ("w3", lambda: w3_concurrent_waits(url, sizes.w3_runs, 0.5, server_pid=pid)),
        ("w3_pool", lambda: w3_concurrent_waits(url, sizes.w3_runs, 0.5, 2 * sizes.w3_runs, pid)),
        ("w3_plain", lambda: w3_plain_client(url, sizes.w3_runs, 0.5, pid)),
        ("w4", lambda: w4_first_event(url, sizes.w4_runs)),
    ]
    if full:
        steps.append(("w5", lambda: w5_fan_out(url, sizes.w5_subscribers, sizes.w5_events)))
    for name, fn in steps:
        out[name] = await median(fn, repeat)
        print(f"  {name}: {out[name]}", flush=True)
    return out


def raise_file_limit() -> None:
    """10,000 idle streams need as many descriptors, here and in the server (a child)."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def stop_if_running(target: Target) -> None:
    if target.proc is not None and target.proc.poll() is None:
        target.stop()


async def with_target(target: Target, body: Callable[[Target], Awaitable[Any]]) -> Any:
    await target.start()
    try:
        return await body(target)
    finally:
        stop_if_running(target)


async def agent_workloads(args: argparse.Namespace, results: dict[str, Any]) -> None:
    """Workloads 1 to 8, the ceiling and the langgraph peer, with runyard's demo agents."""
    sizes = QUICK if args.quick else Sizes()
    repeat = 1 if args.quick else args.repeat
    results["sizes"] = sizes.__dict__
    results["runyard"] = await with_target(runyard(), lambda t: measure(t, sizes, repeat, True))
    results["runyard"]["w6"] = await with_target(
        runyard(), lambda t: w6_memory(t, sizes.w6_idle, sizes.w6_runs)
    )
    print(f"  w6: {results['runyard']['w6']}", flush=True)
    results["runyard"]["w7"] = await with_target(runyard(), lambda t: w7_shutdown(t, sizes.w7_runs))
    print(f"  w7: {results['runyard']['w7']}", flush=True)
    final = await with_target(
        runyard("final"), lambda t: median(lambda: w1_one_stream(t.url, sizes.w1_events), repeat)
    )
    results["runyard"]["w8"] = {
        "durable_events_per_s": results["runyard"]["w1"]["events_per_s"],
        "final_only_events_per_s": final["events_per_s"],
    }
    print(f"  w8: {results['runyard']['w8']}", flush=True)

    async def at_ceiling(t: Target) -> dict[str, Any]:
        return {
            "w1": await median(lambda: w1_one_stream(t.url, sizes.w1_events), repeat),
            "w3": await median(lambda: w3_concurrent_waits(t.url, sizes.w3_runs, 0.5), repeat),
            "w3_pool": await median(
                lambda: w3_concurrent_waits(t.url, sizes.w3_runs, 0.5, 2 * sizes.w3_runs), repeat
            ),
            "w3_plain": await median(lambda: w3_plain_client(t.url, sizes.w3_runs, 0.5), repeat),
        }

    results["ceiling"] = await with_target(ceiling(), at_ceiling)
    print(f"  ceiling: {results['ceiling']}", flush=True)
    if "langgraph" in args.peer:
        results["langgraph"] = await with_target(
            langgraph_peer(), lambda t: measure(t, sizes, repeat, False)
        )


async def graph_workloads(args: argparse.Namespace, results: dict[str, Any]) -> None:
    """G1 to G3: the graphs of bench/graphs served by runyard and the peers, all up at
    once and measured in turn within each round, so that the machine's noise falls on
    all of them alike."""
    sizes = gw.GRAPH_QUICK if args.quick else gw.GraphSizes()
    repeat = 1 if args.quick else args.repeat
    results["graph_sizes"] = sizes.__dict__
    began = time.monotonic()
    async with contextlib.AsyncExitStack() as stack:
        targets = {"runyard": runyard(langgraph_json=gw.CONFIG)}
        database_pid: int | None = None  # aegra's PostgreSQL: its CPU counts as aegra's
        if "langgraph" in args.peer:
            targets["langgraph dev"] = langgraph_peer(gw.GRAPHS)
        if "aegra" in args.peer:
            results["aegra_version"] = aegra.install()
            socket_folder = stack.enter_context(aegra.postgres())
            database_pid = aegra.postmaster_pid(socket_folder)
            port = free_port()
            cmd, env = aegra.command(port, socket_folder, gw.CONFIG)
            targets["aegra"] = Target("aegra", cmd, port, env, cwd=str(gw.GRAPHS), ready="/health")
        for target in targets.values():
            stack.callback(stop_if_running, target)
            await target.start()

        def cpu_of(target: Target) -> Callable[[], float]:
            pids = [None if target.proc is None else target.proc.pid]
            if target.name == "aegra":
                pids.append(database_pid)
            return lambda: sum(cpu_seconds(pid) for pid in pids)

        servers = {name: gw.Server(t.url, cpu_of(t)) for name, t in targets.items()}
        results["graphs"] = await gw.measure_graphs(servers, sizes, repeat)
        results["graphs_wall_s"] = time.monotonic() - began
        if args.profile:
            results["profiles"] = await profile_runyard(targets["runyard"], sizes)


async def profile_runyard(target: Target, sizes: gw.GraphSizes) -> dict[str, str]:
    """py-spy flame graphs of runyard serving G3a (custom events), G1 (the loop), G2
    (chat turns) and, to compare, its native emitter agent."""
    assert target.proc is not None
    pid, url = target.proc.pid, target.url

    async def stream() -> None:
        for _ in range(5):
            await gw.stream_events(url, "stream", sizes.custom_events)

    async def loop() -> None:
        await gw.loop_remote(url, sizes.loop_steps, 4 * sizes.loop_runs)

    async def chat() -> None:
        await gw.chat_turns(url, sizes.chat_turns)

    async def native() -> None:
        for _ in range(5):
            await gw.stream_events(url, "emitter", sizes.custom_events)

    out = {}
    workloads = {"graph-stream": stream, "graph-loop": loop, "graph-chat": chat, "native-emitter": native}  # fmt: skip
    for name, workload in workloads.items():
        paths = await flames.record(pid, name, RESULTS, workload)
        print(f"  profile {name}: {paths['flamegraph']}, {paths['summary']}", flush=True)
        out[name] = str(paths["summary"])
    return out


def replace_between(text: str, begin: str, end: str, body: str) -> str:
    head, _, rest = text.partition(begin)
    _, _, tail = rest.partition(end)
    return f"{head}{begin}\n{body}\n{end}{tail}"


async def main(argv: list[str]) -> None:
    raise_file_limit()
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--peer", choices=["langgraph", "aegra"], action="append", default=[],
        help="also run this peer server (repeatable); aegra runs in the graph part only",
    )  # fmt: skip
    parser.add_argument("--graphs", action="store_true", help="only the graph workloads (G1-G3)")
    parser.add_argument("--profile", action="store_true", help="py-spy runyard's graph path")
    parser.add_argument("--quick", action="store_true", help="small sizes, one repetition")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-doc", action="store_true", help="do not rewrite docs/benchmarks.md")
    args = parser.parse_args(argv)
    RESULTS.mkdir(exist_ok=True)
    repeat = 1 if args.quick else args.repeat
    results: dict[str, Any] = {"machine": machine(), "repeat": repeat}
    if not args.graphs:
        await agent_workloads(args, results)
    await graph_workloads(args, results)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = RESULTS / f"bench-{stamp}.json"
    path.write_text(json.dumps(results, indent=2))
    print(f"results: {path}")
    command = " ".join(["nox -s bench --", *argv]).replace("-- ", "", not argv)
    text = DOC.read_text()
    if not args.graphs:
        table = render(results, command)
        print(table)
        text = replace_between(text, BEGIN, END, table)
    graphs = gw.render(results, command)
    print(graphs)
    text = replace_between(text, GRAPHS_BEGIN, GRAPHS_END, graphs)
    if not args.no_doc and not args.quick:
        DOC.write_text(text)


VERSIONS = ("trio", "hypercorn", "quart-trio", "langgraph-sdk", "langgraph", "langgraph-api")


def _version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "not installed"


def machine() -> dict[str, Any]:
    return {
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": {p: _version(p) for p in VERSIONS},
        "date": time.strftime("%Y-%m-%d"),
    }


def render(r: dict[str, Any], command: str) -> str:
    ry = r["runyard"]
    peer = r.get("langgraph")
    m = r["machine"]

    def ratio(ours: float, theirs: float | None, higher_is_better: bool = True) -> str:
        if theirs is None or not theirs or not ours:
            return "n/a"
        return f"{(ours / theirs if higher_is_better else theirs / ours):.1f}x"

    def p(key: str, sub: str) -> float | None:
        return None if peer is None else peer[key][sub]

    rows = [
        ("1. one run, 10k custom events", f"{ry['w1']['events_per_s']:,.0f} events/s",
         p("w1", "events_per_s"), ratio(ry["w1"]["events_per_s"], p("w1", "events_per_s"))),
        ("2. 50 runs x 1000 events", f"{ry['w2']['events_per_s']:,.0f} events/s",
         p("w2", "events_per_s"), ratio(ry["w2"]["events_per_s"], p("w2", "events_per_s"))),
        ("3. 200 waits of a 0.5 s run", f"wall {ry['w3']['wall_s']:.2f} s, p50 {ry['w3']['p50_s']:.2f} s,"
         f" p99 {ry['w3']['p99_s']:.2f} s", p("w3", "wall_s"),
         ratio(ry["w3"]["wall_s"], p("w3", "wall_s"), False)),
        ("3b. the same, SDK pool of 400", f"wall {ry['w3_pool']['wall_s']:.2f} s, p50 {ry['w3_pool']['p50_s']:.2f} s,"
         f" p99 {ry['w3_pool']['p99_s']:.2f} s", p("w3_pool", "wall_s"),
         ratio(ry["w3_pool"]["wall_s"], p("w3_pool", "wall_s"), False)),
        ("3c. the same, minimal h11 client", f"wall {ry['w3_plain']['wall_s']:.2f} s, p50 {ry['w3_plain']['p50_s']:.2f} s,"
         f" p99 {ry['w3_plain']['p99_s']:.2f} s", p("w3_plain", "wall_s"),
         ratio(ry["w3_plain"]["wall_s"], p("w3_plain", "wall_s"), False)),
        ("4. call to first event, 100 runs", f"p50 {ry['w4']['p50_ms']:.1f} ms, p99 {ry['w4']['p99_ms']:.1f} ms",
         p("w4", "p50_ms"), ratio(ry["w4"]["p50_ms"], p("w4", "p50_ms"), False)),
        ("5. fan-out, 100 subscribers", f"{ry['w5']['events_per_s']:,.0f} events/s delivered", None, "n/a"),
        ("6. 10k idle streams + 1k runs", f"RSS {ry['w6']['rss_mib']:.0f} MiB", None, "n/a"),
        ("7. SIGTERM, 1k runs in flight", f"exit {ry['w7']['exit_s']:.2f} s,"
         f" {ry['w7']['persisted']}/{ry['w7']['runs']} persisted", None, "n/a"),
        ("8. durable vs final-only (w1)", f"{ry['w8']['durable_events_per_s']:,.0f} vs"
         f" {ry['w8']['final_only_events_per_s']:,.0f} events/s"
         f" ({ry['w8']['durable_events_per_s'] / ry['w8']['final_only_events_per_s']:.0%})", None, "n/a"),
    ]  # fmt: skip
    lines = [
        f"Measured {m['date']} on {m['cores']} cores, Python {m['python']}, "
        + ", ".join(f"{k} {v}" for k, v in m["versions"].items())
        + f"; median of {r['repeat']}. Command: `{command}`.",
        "",
        "| workload | runyard | langgraph dev | runyard / peer |",
        "|---|---|---|---|",
    ]
    for name, ours, theirs, rat in rows:
        shown = "not run" if theirs is None else f"{theirs:,.2f}"
        lines.append(f"| {name} | {ours} | {shown} | {rat} |")
    ceil = r["ceiling"]
    lines += [
        "",
        f"Ceiling (the same client against a trio server that only writes pre-encoded SSE"
        f" frames): {ceil['w1']['events_per_s']:,.0f} events/s; runyard's workload 1 is"
        f" {ry['w1']['events_per_s'] / ceil['w1']['events_per_s']:.0%} of it.",
        "",
        "Workload 3 by client. Ceiling: a server that only sleeps 0.5 s and answers."
        " CPU: seconds used by the server process and by the client during the 200 waits.",
        "",
        "| client | ceiling wall | runyard wall | runyard CPU, server / client"
        " | langgraph dev wall | peer CPU, server / client |",
        "|---|---|---|---|---|---|",
    ]
    for key, name in W3_CLIENTS.items():
        ours = ry[key]
        peer_wall = "not run" if peer is None else f"{peer[key]['wall_s']:.2f} s"
        their_cpu = (
            "n/a"
            if peer is None
            else f"{peer[key]['server_cpu_s']:.2f} / {peer[key]['client_cpu_s']:.2f} s"
        )
        lines.append(
            f"| {name} | {ceil[key]['wall_s']:.2f} s | {ours['wall_s']:.2f} s"
            f" | {ours['server_cpu_s']:.2f} / {ours['client_cpu_s']:.2f} s | {peer_wall} | {their_cpu} |"
        )
    return "\n".join(lines)


W3_CLIENTS = {
    "w3": "langgraph-sdk get_client() (pool of 100)",
    "w3_pool": "langgraph-sdk, httpx pool of 400",
    "w3_plain": "minimal h11 client, a connection per wait",
}


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
