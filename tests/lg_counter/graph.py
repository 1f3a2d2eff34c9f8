"""A graph of many small steps, for crash tests: each step counts one up and logs it."""

import asyncio
import operator
from typing import Annotated, Any, TypedDict

from langgraph.config import get_stream_writer
from langgraph.graph import END, START, StateGraph


class State(TypedDict, total=False):
    target: int
    count: int
    seen: Annotated[list[int], operator.add]
    pause: float


async def step(state: State) -> dict[str, Any]:
    count = state.get("count", 0) + 1
    get_stream_writer()({"count": count})
    await asyncio.sleep(state.get("pause", 0.02))
    return {"count": count, "seen": [count]}


def _more(state: State) -> str:
    return "step" if state.get("count", 0) < state.get("target", 1) else END


builder = StateGraph(State)
builder.add_node("step", step)
builder.add_edge(START, "step")
builder.add_conditional_edges("step", _more, ["step", END])
graph = builder.compile().with_config(recursion_limit=10_000)
