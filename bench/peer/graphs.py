"""The demo agents as LangGraph graphs, for `langgraph dev` (the benchmark's peer)."""

import asyncio
import time
from typing import TypedDict

from langgraph.config import get_stream_writer
from langgraph.graph import END, START, StateGraph


class State(TypedDict, total=False):
    n: int
    delay: float
    done: int


async def emit(state: State) -> State:
    write = get_stream_writer()
    n = state.get("n", 10)
    delay = state.get("delay", 0)
    for i in range(n):
        write({"i": i, "token": "hello"})
        if delay:
            await asyncio.sleep(delay)
    return {"done": n}


async def stamped(state: State) -> State:
    """bench/token_agent.py's tokens: each token carries its emit time (monotonic)."""
    write = get_stream_writer()
    n = state.get("n", 10)
    delay = state.get("delay", 0.04)
    for i in range(n):
        write({"i": i, "t": time.monotonic(), "token": "hello"})
        await asyncio.sleep(delay)
    return {"done": n}


async def sleep(state: State) -> State:
    await asyncio.sleep(state.get("delay", 1))
    return {"done": 1}


def _single(node):
    graph = StateGraph(State)
    graph.add_node("work", node)
    graph.add_edge(START, "work")
    graph.add_edge("work", END)
    return graph.compile()


emitter = _single(emit)
sleepy = _single(sleep)
tokens = _single(stamped)
