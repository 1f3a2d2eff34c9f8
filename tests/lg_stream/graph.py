"""A LangGraph project for tests/test_stream_modes.py: every stream mode has something to say.

``plan`` writes custom events; ``chat`` streams a fake chat model's reply,
``tokens`` chunks long (words and the spaces between them); ``inner`` is a
subgraph whose node streams a reply of its own; ``answer`` calls a tool and
returns a finished message (never streamed: LangGraph reports it whole), or
takes ``slow`` seconds first (noting when its cleanup ran), or fails.
"""

import asyncio
import operator
from typing import Annotated, Any, TypedDict

from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, AnyMessage
from langchain_core.tools import tool
from langgraph.config import get_stream_writer
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages


class State(TypedDict, total=False):
    messages: Annotated[list[AnyMessage], add_messages]
    steps: Annotated[list[str], operator.add]
    tokens: int
    slow: float
    fail: bool


CLEANUPS: list[str] = []


class Inner(TypedDict):
    """The subgraph's state: the messages it shares with the graph."""

    messages: Annotated[list[AnyMessage], add_messages]


def _reply(chunks: int, word: str) -> AIMessage:
    """A reply the fake model streams in ``chunks`` chunks (it splits on whitespace)."""
    return AIMessage(content=" ".join([word] * ((max(chunks, 1) + 1) // 2)))


@tool
def lookup(query: str) -> str:
    """Look ``query`` up."""
    return f"found {query}"


async def plan(state: State) -> dict[str, Any]:
    get_stream_writer()({"plan": "ready"})
    return {"steps": ["plan"]}


async def chat(state: State) -> dict[str, Any]:
    model = GenericFakeChatModel(messages=iter([_reply(state.get("tokens", 5), "hello")]))
    return {"messages": [await model.ainvoke(state.get("messages", []))], "steps": ["chat"]}


async def think(state: Inner) -> dict[str, Any]:
    get_stream_writer()({"inner": "thinking"})
    model = GenericFakeChatModel(messages=iter([_reply(3, "deep")]))
    return {"messages": [await model.ainvoke(state["messages"])]}


async def answer(state: State) -> dict[str, Any]:
    if state.get("fail"):
        raise ValueError("the database password is hunter2")
    if state.get("slow"):
        get_stream_writer()({"slow": "started"})
        try:
            await asyncio.sleep(state["slow"])
        finally:
            CLEANUPS.append("answer cleaned up")
    found = await lookup.ainvoke({"query": "runyard"})
    return {"messages": [AIMessage(content=found, id="answer-1")], "steps": ["answer"]}


def _inner() -> Any:
    builder = StateGraph(Inner)
    builder.add_node("think", think)
    builder.add_edge(START, "think")
    builder.add_edge("think", END)
    return builder.compile()


builder = StateGraph(State)
builder.add_node("plan", plan)
builder.add_node("chat", chat)
builder.add_node("inner", _inner())
builder.add_node("answer", answer)
builder.add_edge(START, "plan")
builder.add_edge("plan", "chat")
builder.add_edge("chat", "inner")
builder.add_edge("inner", "answer")
builder.add_edge("answer", END)
graph = builder.compile()
