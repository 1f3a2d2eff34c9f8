"""Two small graphs for tests/test_thread_state.py: a chat that answers with
what it has heard so far (so a run shows whether it saw the thread's earlier
messages), and an approval that stops at ``interrupt()`` for a decision."""

import asyncio
from typing import Annotated, Any, TypedDict

from langchain_core.messages import AIMessage, AnyMessage
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.types import interrupt


class Chat(TypedDict, total=False):
    messages: Annotated[list[AnyMessage], add_messages]
    pause: float


async def reply(state: Chat) -> dict[str, Any]:
    await asyncio.sleep(state.get("pause", 0))
    heard = [m.content for m in state.get("messages", []) if m.type == "human"]
    return {"messages": [AIMessage(content="heard: " + " | ".join(map(str, heard)))]}


chat_builder = StateGraph(Chat)
chat_builder.add_node("reply", reply)
chat_builder.add_edge(START, "reply")
chat_builder.add_edge("reply", END)
chat = chat_builder.compile()


class Approval(TypedDict, total=False):
    draft: str
    decision: str


def draft(state: Approval) -> dict[str, Any]:
    return {"draft": "plan A"}


def review(state: Approval) -> dict[str, Any]:
    decision = interrupt({"question": "approve?", "draft": state["draft"]})
    return {"decision": decision}


approval_builder = StateGraph(Approval)
approval_builder.add_node("draft", draft)
approval_builder.add_node("review", review)
approval_builder.add_edge(START, "draft")
approval_builder.add_edge("draft", "review")
approval_builder.add_edge("review", END)
approval = approval_builder.compile()
