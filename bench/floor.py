"""What the fixed stack costs before runyard does anything (docs/capacity.md).

Two measurements, each side by side in one run, to tell runyard's cost from
trio's and hypercorn's:

- **timers**: N trio tasks that each loop ``trio.sleep(0.04)`` for 10 s and do
  nothing else (w9's agent without its emit), against the same N tasks woken
  by one shared ticker (``trio.lowlevel.reschedule``, the cheapest wake-up
  trio has). CPU per wake-up, and the share of the wake-ups that happened.
- **requests**: server CPU per sequential keep-alive ``GET`` from one client
  (``http.client``), against bench/ceiling.py (a raw trio server), a bare
  ASGI app under hypercorn's trio worker, the same under quart-trio, and
  ``runyard serve``'s ``/ok``.
- **w3 on each**: workload 3 (200 concurrent ``POST /runs/wait`` of a 0.5 s
  run from the minimal h11 client) against the same four servers; the bare
  apps answer it by sleeping ``input.delay``, as the ceiling does.

    python bench/floor.py                   # prints one JSON object
    python bench/floor.py timers N MODE     # one timer measurement (a child)
    python bench/floor.py asgi PORT KIND    # one ASGI server (a child)
"""

from __future__ import annotations

import asyncio
import http.client
import json
import statistics
import subprocess
import sys
import time
from typing import Any

import bench
import trio

from runyard.config import Settings

TICK = 0.04  # seconds between an agent's tokens in w9
SECONDS = 10.0  # how long each timer measurement runs
TASKS = (500, 1000, 2000)
REQUESTS = 2000  # sequential requests per server and round
ROUNDS = 3


# -- timers (in a child process, so that each starts from a clean trio) -----------------


def timers(tasks: int, mode: str) -> dict[str, float]:
    wakes = 0
    parked: list[tuple[float, trio.lowlevel.Task]] = []

    async def ticker(stop: float) -> None:
        nonlocal parked
        while trio.current_time() < stop + TICK:
            await trio.sleep(0.005)
            now = trio.current_time()
            due = [task for at, task in parked if at <= now]
            parked = [(at, task) for at, task in parked if at > now]
            for task in due:
                trio.lowlevel.reschedule(task)

    async def sleeper(stop: float) -> None:
        nonlocal wakes
        while trio.current_time() < stop:
            if mode == "sleep":
                await trio.sleep(TICK)
            else:
                parked.append((trio.current_time() + TICK, trio.lowlevel.current_task()))
                await trio.lowlevel.wait_task_rescheduled(lambda _: trio.lowlevel.Abort.SUCCEEDED)
            wakes += 1

    async def main() -> float:
        stop = trio.current_time() + SECONDS
        began = time.process_time()
        async with trio.open_nursery() as nursery:
            if mode == "ticker":
                nursery.start_soon(ticker, stop)
            for _ in range(tasks):
                nursery.start_soon(sleeper, stop)
        return time.process_time() - began

    cpu = trio.run(main)
    scheduled = tasks * SECONDS / TICK
    return {"cpu_s": cpu, "core_share": cpu / SECONDS, "wakes_done": wakes / scheduled,
            "us_per_wake": cpu / max(wakes, 1) * 1e6}  # fmt: skip


def measure_timers() -> list[dict[str, Any]]:
    rows = []
    for tasks in TASKS:
        for mode in ("sleep", "ticker"):
            cmd = [sys.executable, __file__, "timers", str(tasks), mode]
            rows.append({"tasks": tasks, "mode": mode} | json.loads(subprocess.check_output(cmd)))
            print(f"  timers {rows[-1]}", flush=True)
    return rows


# -- requests ---------------------------------------------------------------------------

OK_BODY = b'{"ok":true}'
WAITED = b'{"done":1}'


async def bare_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The least an ASGI app can do: lifespan, ``/runs/wait`` as a sleep of
    ``input.delay``, and 200 ``{"ok":true}`` to anything else."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            kind = message["type"].rpartition(".")[2]
            await send({"type": f"lifespan.{kind}.complete"})
            if kind == "shutdown":
                return
    body = OK_BODY
    if scope["path"] == "/runs/wait":
        given = b""
        while (message := await receive())["type"] == "http.request":
            given += message.get("body", b"")
            if not message.get("more_body"):
                break
        await trio.sleep(float(json.loads(given)["input"]["delay"]))
        body = WAITED
    headers = [(b"content-type", b"application/json")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def quart_wait() -> dict[str, int]:
    from quart import request

    given = await request.get_json()
    await trio.sleep(float(given["input"]["delay"]))
    return {"done": 1}


def asgi(port: int, kind: str) -> None:
    from hypercorn.config import Config
    from hypercorn.trio import serve

    app: Any = bare_app
    if kind == "quart":
        from quart_trio import QuartTrio

        app = QuartTrio("floor")
        app.get("/ok")(lambda: {"ok": True})
        app.post("/runs/wait")(quart_wait)
    config = Config()
    config.bind = [f"127.0.0.1:{port}"]
    config.accesslog = None
    config.errorlog = None
    config.backlog = Settings().backlog  # as runyard serve: 200 connections at once
    trio.run(serve, app, config)


def servers() -> dict[str, bench.Target]:
    def child(kind: str) -> bench.Target:
        port = bench.free_port()
        return bench.Target(kind, [sys.executable, __file__, "asgi", str(port), kind], port)

    return {"ceiling": bench.ceiling(), "hypercorn": child("hypercorn"),
            "hypercorn+quart": child("quart"), "runyard": bench.runyard()}  # fmt: skip


def cpu_per_request(target: bench.Target) -> float:
    assert target.proc is not None
    conn = http.client.HTTPConnection("127.0.0.1", target.port)
    for _ in range(100):  # warm: imports, caches, the connection
        conn.request("GET", "/ok")
        conn.getresponse().read()
    began = bench.cpu_seconds(target.proc.pid)
    for _ in range(REQUESTS):
        conn.request("GET", "/ok")
        conn.getresponse().read()
    conn.close()
    return (bench.cpu_seconds(target.proc.pid) - began) / REQUESTS * 1e6


def w3_wall(target: bench.Target) -> float:
    return float(asyncio.run(bench.w3_plain_client(target.url, 200, 0.5))["wall_s"])


def measure_requests() -> dict[str, dict[str, float]]:
    """Per server: CPU per request (us) and workload 3's wall time (s), medians."""
    targets = servers()
    per: dict[str, dict[str, list[float]]] = {name: {"us": [], "w3_s": []} for name in targets}
    try:
        for t in targets.values():
            asyncio.run(t.start())
        for _ in range(ROUNDS):
            for name, t in targets.items():
                per[name]["us"].append(cpu_per_request(t))
                per[name]["w3_s"].append(w3_wall(t))
    finally:
        for t in targets.values():
            bench.stop_if_running(t)
    out = {name: {k: statistics.median(v) for k, v in m.items()} for name, m in per.items()}
    print(f"  per server, CPU per request (us) and w3 wall (s): {out}", flush=True)
    return out


def measure() -> dict[str, Any]:
    return {"timers": measure_timers(), "servers": measure_requests()}


if __name__ == "__main__":
    if sys.argv[1:2] == ["timers"]:
        print(json.dumps(timers(int(sys.argv[2]), sys.argv[3])))
    elif sys.argv[1:2] == ["asgi"]:
        asgi(int(sys.argv[2]), sys.argv[3])
    else:
        bench.RESULTS.mkdir(exist_ok=True)
        print(json.dumps(measure(), indent=1))
