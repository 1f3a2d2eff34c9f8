"""A small LangGraph project, served by runyard in tests/test_langgraph.py.

Three nodes: one writes custom events, one calls a fake chat model (so
``messages`` streaming has tokens), one can be told to take its time, and
notes when its cleanup ran.
"""

import asyncio
import operator
from typing import Annotated, Any, TypedDict

from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, AnyMessage
from langchain_core.runnables import RunnableConfig
from langgraph.config import get_stream_writer
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages

CLEANUPS: list[str] = []


class State(TypedDict, total=False):
    messages: Annotated[list[AnyMessage], add_messages]
    steps: Annotated[list[str], operator.add]
    slow: float
    seen_thread: str


async def plan(state: State, config: RunnableConfig) -> dict[str, Any]:
    write = get_stream_writer()
    for i in range(3):
        write({"plan_step": i})
    return {"steps": ["plan"], "seen_thread": config["configurable"].get("thread_id", "")}


async def chat(state: State) -> dict[str, Any]:
    model = GenericFakeChatModel(messages=iter([AIMessage(content="hello there friend")]))
    reply = await model.ainvoke(state.get("messages", []))
    return {"messages": [reply], "steps": ["chat"]}


async def slow(state: State) -> dict[str, Any]:
    get_stream_writer()({"slow": "started"})
    try:
        await asyncio.sleep(state.get("slow", 0))
    finally:
        CLEANUPS.append("slow node cleaned up")
    return {"steps": ["slow"]}


builder = StateGraph(State)
builder.add_node("plan", plan)
builder.add_node("chat", chat)
builder.add_node("slow", slow)
builder.add_edge(START, "plan")
builder.add_edge("plan", "chat")
builder.add_edge("chat", "slow")
builder.add_edge("slow", END)
graph = builder.compile()
