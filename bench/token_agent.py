"""The capacity workloads' agent: LLM-like tokens at a steady rate, each stamped.

``tokens`` is the demo ``emitter`` with the emit time in every event (the
system-wide monotonic clock, which the load client in another process reads
too), so the client can measure emit -> receive latency per event. Like
``emitter`` it sleeps ``delay`` after each emit, so a server that is late
to wake it makes the whole run late: a run's end-to-end time against
``n * delay`` is its slowdown.

Served by ``runyard serve --config`` with ``[agents] tokens =
"token_agent:tokens"`` from this folder (bench/capacity.py writes that file).
"""

from __future__ import annotations

import time

import trio

from runyard import Agent, RunContext, agent
from runyard.model import JSON

TOKEN = "hello"  # one short word, as an LLM token is


async def _tokens(input: JSON, ctx: RunContext) -> JSON:
    given = input if isinstance(input, dict) else {}
    n = int(given.get("n", 10))
    delay = float(given.get("delay", 0.04))
    for i in range(n):
        await ctx.emit({"i": i, "t": time.monotonic(), "token": TOKEN})
        await trio.sleep(delay)
    return {"done": n}


tokens: Agent = agent("tokens", description="n stamped tokens, delay s apart")(_tokens)
