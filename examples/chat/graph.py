"""A chat graph for LangGraph front ends (agent-chat-ui), offline and deterministic.

``chat`` answers with :class:`EchoChatModel`, a fake model that streams its
reply token by token and builds it from the whole conversation, so a client
can see the context a thread kept. When the newest human message asks to
"approve" something, ``approval`` stops the graph with ``interrupt()`` and
answers with the value the run is resumed with (``Command(resume=...)``).

``config["configurable"]["token_delay"]`` (seconds) slows the tokens down,
for clients that want to catch a run in the middle.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Annotated, Any, TypedDict

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, AnyMessage, BaseMessage, HumanMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import RunnableConfig
from langgraph.config import get_stream_writer
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.types import interrupt
from pydantic import Field

# The word in a human message that makes the graph ask for approval.
APPROVAL_WORD = "approve"


def _humans(messages: Sequence[BaseMessage]) -> list[str]:
    return [m.text for m in messages if isinstance(m, HumanMessage)]


def reply_to(messages: Sequence[BaseMessage]) -> str:
    """The answer to a conversation: what it can see of it, in one sentence."""
    humans = _humans(messages) or [""]
    return (
        f"You said: {humans[-1]} | I see {len(messages)} messages,"
        f" {len(humans)} from you; the first was: {humans[0]}"
    )


class EchoChatModel(GenericFakeChatModel):
    """GenericFakeChatModel answering :func:`reply_to` instead of a script."""

    messages: Iterator[AIMessage | str] = Field(default_factory=lambda: iter(()))
    token_delay: float = 0.0  # seconds between two streamed tokens

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return ChatResult(generations=[ChatGeneration(message=AIMessage(reply_to(messages)))])

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        # The sync splitter, with an await between tokens: a cancel lands between them.
        for chunk in self._stream(messages, stop=stop, **kwargs):
            if run_manager is not None:
                await run_manager.on_llm_new_token(chunk.text, chunk=chunk)
            yield chunk
            await asyncio.sleep(self.token_delay)


class State(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]


async def chat(state: State, config: RunnableConfig) -> dict[str, Any]:
    delay = float(config.get("configurable", {}).get("token_delay", 0))
    get_stream_writer()({"status": "answering", "seen": len(state["messages"])})
    reply = await EchoChatModel(token_delay=delay).ainvoke(state["messages"], config)
    return {"messages": [reply]}


def _asks_for_approval(state: State) -> str:
    last = (_humans(state["messages"]) or [""])[-1]
    return "approval" if APPROVAL_WORD in last.lower() else END


async def approval(state: State) -> dict[str, Any]:
    request = _humans(state["messages"])[-1]
    decision = interrupt({"question": "Approve this request?", "request": request})
    return {"messages": [AIMessage(f"Decision on '{request}': {decision}")]}


builder = StateGraph(State)
builder.add_node("chat", chat)
builder.add_node("approval", approval)
builder.add_edge(START, "chat")
builder.add_conditional_edges("chat", _asks_for_approval, ["approval", END])
builder.add_edge("approval", END)
graph = builder.compile()
