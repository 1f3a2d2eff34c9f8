"""The graph workloads of docs/benchmarks.md: LangGraph graphs served from
``bench/graphs/langgraph.json`` by runyard (``--langgraph-json``), ``langgraph
dev`` and aegra, driven with the official langgraph-sdk client.

- G1 checkpointer overhead: ``loop``, 200 steps a run, a checkpoint per step,
  through the server, against the same graph run here with LangGraph's
  ``InMemorySaver`` (``graph.ainvoke``, no server).
- G2 time to first token: 100 sequential chat turns on one thread, from the
  ``runs.stream`` call to the first ``messages`` event, with the run body
  agent-chat-ui sends; the same turns with LangGraph alone, for reference.
- G3 streaming throughput: one run of ``stream`` sending 10,000 ``custom``
  events (G3a), or one fake model answer streamed as ``messages`` events
  (G3b); LangGraph alone and runyard's native ``emitter`` agent alongside,
  for reference.

Nothing here imports trio_asyncio: it patches asyncio (``get_running_loop``
becomes a Python function) and would slow the in-process baselines down.
"""

from __future__ import annotations

import importlib.util
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from langgraph_sdk import get_client

GRAPHS = Path(__file__).resolve().with_name("graphs")
CONFIG = GRAPHS / "langgraph.json"
RECURSION_LIMIT = 10_000  # LangGraph's default of 25 stops a 200-step loop


@dataclass
class GraphSizes:
    loop_steps: int = 200
    loop_runs: int = 5  # runs of the loop per measurement, each on a new thread
    chat_turns: int = 100
    custom_events: int = 10_000
    tokens: int = 2_500  # words of the streamed answer: a token per word and per space


GRAPH_QUICK = GraphSizes(200, 2, 10, 1000, 250)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _graphs_module() -> Any:
    """bench/graphs/graphs.py, imported as the servers import it."""
    if "bench_graphs" not in sys.modules:
        spec = importlib.util.spec_from_file_location("bench_graphs", GRAPHS / "graphs.py")
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules["bench_graphs"] = module
        spec.loader.exec_module(module)
    return sys.modules["bench_graphs"]


async def loop_in_process(steps: int, runs: int) -> dict[str, float]:
    """G1's baseline: the loop with ``InMemorySaver``, in this process, no server."""
    from langgraph.checkpoint.memory import InMemorySaver

    graph = _graphs_module().build_loop(InMemorySaver())
    took = 0.0
    for _ in range(runs):
        config = {
            "configurable": {"thread_id": str(uuid.uuid4())},
            "recursion_limit": RECURSION_LIMIT,
        }
        began = time.perf_counter()
        state = await graph.ainvoke({"count": 0, "steps": steps}, config)
        took += time.perf_counter() - began
        assert state["count"] == steps, state
    return {"steps_per_s": steps * runs / took, "units": steps * runs}


async def loop_remote(url: str, steps: int, runs: int) -> dict[str, float]:
    """G1 through a server: ``runs.wait`` on a new thread (created before the clock starts)."""
    client: Any = get_client(url=url, api_key=None)
    took = 0.0
    for _ in range(runs):
        thread = await client.threads.create()
        began = time.perf_counter()
        state = await client.runs.wait(
            thread["thread_id"],
            "loop",
            input={"count": 0, "steps": steps},
            config={"recursion_limit": RECURSION_LIMIT},
        )
        took += time.perf_counter() - began
        assert isinstance(state, dict), state
        assert state.get("count") == steps, state
    return {"steps_per_s": steps * runs / took, "units": steps * runs}


async def chat_turns(url: str, turns: int) -> dict[str, float]:
    """G2: ``turns`` chat turns on one thread; call to first ``messages`` event, and to the end."""
    client: Any = get_client(url=url, api_key=None)
    thread = await client.threads.create()
    first: list[float] = []
    whole: list[float] = []
    for turn in range(turns):
        message = {"id": str(uuid.uuid4()), "type": "human", "content": [{"type": "text", "text": f"turn {turn}"}]}  # fmt: skip
        began = time.perf_counter()
        seen: float | None = None
        async for part in client.runs.stream(
            thread["thread_id"],
            "chat",
            input={"messages": [message]},
            stream_mode=["values", "messages-tuple", "custom"],
            stream_subgraphs=True,
            stream_resumable=True,
            on_disconnect="continue",
        ):
            if part.event == "messages" and seen is None:
                seen = time.perf_counter() - began
        assert seen is not None, f"turn {turn}: no messages event"
        first.append(seen * 1000)
        whole.append((time.perf_counter() - began) * 1000)
    # The thread kept the conversation: the last answer saw every turn.
    state = await client.threads.get_state(thread["thread_id"])
    assert len(state["values"]["messages"]) == 2 * turns, len(state["values"]["messages"])
    return {
        "p50_ms": pct(first, 0.5),
        "p99_ms": pct(first, 0.99),
        "turn_p50_ms": pct(whole, 0.5),
        "units": turns,
    }


async def chat_in_process(turns: int) -> dict[str, float]:
    """G2's floor: the same turns with LangGraph alone (``InMemorySaver``), no server."""
    from langgraph.checkpoint.memory import InMemorySaver

    graph = _graphs_module().chat.copy(update={"checkpointer": InMemorySaver()})
    config = {"configurable": {"thread_id": str(uuid.uuid4())}}
    first: list[float] = []
    whole: list[float] = []
    for turn in range(turns):
        message = {"id": str(uuid.uuid4()), "type": "human", "content": f"turn {turn}"}
        began = time.perf_counter()
        seen: float | None = None
        async for _ns, mode, _chunk in graph.astream(
            {"messages": [message]},
            config,
            stream_mode=["values", "messages", "custom", "checkpoints"],
            subgraphs=True,
        ):
            if mode == "messages" and seen is None:
                seen = time.perf_counter() - began
        assert seen is not None, f"turn {turn}: no messages event"
        first.append(seen * 1000)
        whole.append((time.perf_counter() - began) * 1000)
    return {
        "p50_ms": pct(first, 0.5),
        "p99_ms": pct(first, 0.99),
        "turn_p50_ms": pct(whole, 0.5),
        "units": turns,
    }


async def stream_events(url: str, graph: str, n: int, tokens: bool = False) -> dict[str, float]:
    """G3: one run streaming ``custom`` events (or ``messages`` with ``tokens``); events/s."""
    client: Any = get_client(url=url, api_key=None)
    event = "messages" if tokens else "custom"
    mode = "messages-tuple" if tokens else "custom"
    given: dict[str, Any] = {"n": n, "tokens": True} if tokens else {"n": n}
    began = time.perf_counter()
    count = 0
    async for part in client.runs.stream(None, graph, input=given, stream_mode=mode):
        count += part.event == event
    took = time.perf_counter() - began
    assert count >= n, (count, n)
    return {"events_per_s": count / took, "units": count}


async def stream_in_process(n: int, tokens: bool = False) -> dict[str, float]:
    """G3's floor: the same graph streamed here by LangGraph alone, no server, no client."""
    mode = "messages" if tokens else "custom"
    given: dict[str, Any] = {"n": n, "tokens": True} if tokens else {"n": n}
    began = time.perf_counter()
    count = 0
    async for _ns, got, _chunk in _graphs_module().stream.astream(
        given, stream_mode=["values", "checkpoints", mode], subgraphs=True
    ):
        count += got == mode
    return {"events_per_s": count / (time.perf_counter() - began), "units": count}


Figures = dict[str, dict[str, dict[str, float]]]  # server -> workload -> figure -> value


@dataclass
class Server:
    """A server under test, as the graph workloads see it."""

    url: str
    cpu: Callable[[], float]  # CPU seconds its processes (and its database's) used so far


async def measure_graphs(servers: dict[str, Server], sizes: GraphSizes, repeat: int) -> Figures:
    """Each workload on each server in turn, ``repeat`` rounds; the median of each figure.

    Every figure comes with ``cpu_us``: the CPU the server used per unit of
    work (step, turn or event), which the machine's noise moves far less than
    wall time; for the in-process baselines, this process's CPU. The in-process
    baselines are measured right before each server's turn, so that each pair
    of figures shares the machine's state of the moment.
    """
    rounds: dict[str, dict[str, list[dict[str, float]]]] = {}
    here = Server("", time.process_time)

    async def keep(
        server: str, at: Server, workload: str, run: Awaitable[dict[str, float]]
    ) -> None:
        before = at.cpu()  # a coroutine does nothing until awaited
        figures = await run
        figures["cpu_us"] = (at.cpu() - before) * 1e6 / figures["units"]
        rounds.setdefault(server, {}).setdefault(workload, []).append(figures)
        print(f"  {server} {workload}: {figures}", flush=True)

    steps, runs = sizes.loop_steps, sizes.loop_runs
    for round_ in range(repeat):
        print(f"== graphs, round {round_ + 1} of {repeat}", flush=True)
        for name, at in servers.items():
            await keep("in-process", here, "g1", loop_in_process(steps, runs))
            await keep(name, at, "g1", loop_remote(at.url, steps, runs))
        for name, at in servers.items():
            await keep("in-process", here, "g2", chat_in_process(sizes.chat_turns))
            await keep(name, at, "g2", chat_turns(at.url, sizes.chat_turns))
        for name, at in servers.items():
            await keep("in-process", here, "g3a", stream_in_process(sizes.custom_events))
            await keep(name, at, "g3a", stream_events(at.url, "stream", sizes.custom_events))  # fmt: skip
        for name, at in servers.items():
            await keep("in-process", here, "g3b", stream_in_process(sizes.tokens, True))
            await keep(name, at, "g3b", stream_events(at.url, "stream", sizes.tokens, True))  # fmt: skip
        ours = servers["runyard"]
        await keep("runyard", ours, "native", stream_events(ours.url, "emitter", sizes.custom_events))  # fmt: skip
    return {
        server: {
            workload: {k: statistics.median(r[k] for r in results) for k in results[0]}
            for workload, results in workloads.items()
        }
        for server, workloads in rounds.items()
    }


def render(results: dict[str, Any], command: str) -> str:
    """The graph section's tables for docs/benchmarks.md."""
    figures: Figures = results["graphs"]
    sizes = results["graph_sizes"]
    m = results["machine"]
    servers = [s for s in ("runyard", "langgraph dev", "aegra") if s in figures]
    peers = servers[1:]

    def get(server: str, workload: str, key: str) -> float | None:
        if key == "cpu_ms":
            cpu = get(server, workload, "cpu_us")
            return None if cpu is None else cpu / 1000
        return figures.get(server, {}).get(workload, {}).get(key)

    versions = ", ".join(f"{k} {m['versions'][k]}" for k in ("langgraph", "langgraph-api"))
    if "aegra_version" in results:
        versions += f", aegra-api {results['aegra_version']}"
    lines = [
        f"Measured {m['date']} on {m['cores']} cores, Python {m['python']}, {versions};"
        f" median of {results['repeat']} rounds, each server in turn within a round."
        f" Took {results['graphs_wall_s'] / 60:.1f} min. Command: `{command}`."
        " CPU: what the server's processes used per step, turn or event (aegra's"
        " includes PostgreSQL's); in-process: the bench's own.",
        "",
        f"G1, checkpointer overhead: a {sizes['loop_steps']}-step loop (a checkpoint per step),"
        f" {sizes['loop_runs']} runs per measurement.",
        "",
        "| where the loop runs | steps/s | vs in-process | CPU per step |",
        "|---|---|---|---|",
    ]
    base = get("in-process", "g1", "steps_per_s")
    savers = {
        "in-process": "in-process, `InMemorySaver` (`graph.ainvoke`, no server)",
        "runyard": "runyard, its durable SQLite saver (`runs.wait`)",
        "langgraph dev": "langgraph dev, its in-memory saver (`runs.wait`)",
        "aegra": "aegra, its PostgreSQL saver (`runs.wait`)",
    }
    for server in ["in-process", *servers]:
        value, cpu = get(server, "g1", "steps_per_s"), get(server, "g1", "cpu_us")
        if value is not None and cpu is not None and base:
            lines.append(
                f"| {savers[server]} | {value:,.0f} | {value / base:.0%} | {cpu / 1000:.2f} ms |"
            )
    columns = ["in-process", *servers]
    lines += [
        "",
        "| workload | LangGraph alone, in-process | " + " | ".join(servers) + " | "
        + " | ".join(f"runyard / {p}" for p in peers) + " |",
        "|---|" + "---|" * (len(columns) + len(peers)),
    ]  # fmt: skip
    rows = [
        (f"G2. chat turn, call to first `messages` event, p50 ({sizes['chat_turns']} turns, one thread)", "g2", "p50_ms", "{:,.1f} ms", False),
        ("G2. the same, p99", "g2", "p99_ms", "{:,.1f} ms", False),
        ("G2. the same, whole turn p50", "g2", "turn_p50_ms", "{:,.1f} ms", False),
        ("G2. CPU per turn", "g2", "cpu_ms", "{:,.1f} ms", False),
        (f"G3a. one run, {sizes['custom_events']:,} `custom` events", "g3a", "events_per_s", "{:,.0f} events/s", True),
        ("G3a. CPU per event", "g3a", "cpu_us", "{:,.0f} µs", False),
        (f"G3b. one run, a fake model's {sizes['tokens']:,}-word answer as `messages` events", "g3b", "events_per_s", "{:,.0f} events/s", True),
        ("G3b. CPU per event", "g3b", "cpu_us", "{:,.0f} µs", False),
    ]  # fmt: skip
    for title, workload, key, fmt, higher in rows:
        cells = []
        for server in columns:
            value = get(server, workload, key)
            cells.append("n/a" if value is None else fmt.format(value))
        ours = get("runyard", workload, key)
        for peer in peers:
            theirs = get(peer, workload, key)
            if not ours or not theirs:
                cells.append("n/a")
            else:
                cells.append(f"{(ours / theirs if higher else theirs / ours):.1f}x")
        lines.append(f"| {title} | " + " | ".join(cells) + " |")
    native = get("runyard", "native", "events_per_s")
    native_cpu = get("runyard", "native", "cpu_us")
    graph = get("runyard", "g3a", "events_per_s")
    if native and graph and native_cpu is not None:
        lines += [
            "",
            f"For reference, runyard's native `emitter` agent (workload 1) in the same rounds:"
            f" {native:,.0f} events/s, {native_cpu:,.0f} µs of CPU per event;"
            f" the graph path runs at {graph / native:.0%} of it.",
        ]
    return "\n".join(lines)
