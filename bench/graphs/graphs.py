"""The graph benchmarks' LangGraph graphs, served alike by runyard (``--langgraph-json``),
``langgraph dev`` and aegra from ``langgraph.json`` beside this file.

- ``loop``: one node that adds 1 to a counter and loops back ``steps`` times
  (``recursion_limit`` raised by the caller): a checkpoint per step, no I/O.
- ``chat``: the chat of ``examples/chat/graph.py`` without its approval step; a
  fake model streams its answer word by word, built from the whole conversation.
- ``stream``: ``n`` ``custom`` events (``get_stream_writer``), or, with
  ``tokens: true``, one fake model answer of ``n`` tokens (``messages`` events).
"""

from __future__ import annotations

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
from pydantic import Field

# -- loop ---------------------------------------------------------------------------


class LoopState(TypedDict, total=False):
    count: int
    steps: int


def step(state: LoopState) -> LoopState:
    return {"count": state.get("count", 0) + 1}


def _again(state: LoopState) -> str:
    return "step" if state.get("count", 0) < state.get("steps", 200) else END


def build_loop(checkpointer: Any = None) -> Any:
    """The loop graph; the in-process baseline compiles it with ``InMemorySaver``."""
    graph = StateGraph(LoopState)
    graph.add_node("step", step)
    graph.add_edge(START, "step")
    graph.add_conditional_edges("step", _again, ["step", END])
    return graph.compile(checkpointer=checkpointer)


loop = build_loop()

# -- chat ---------------------------------------------------------------------------


def reply_to(messages: Sequence[BaseMessage]) -> str:
    humans = [m.text for m in messages if isinstance(m, HumanMessage)] or [""]
    return (
        f"You said: {humans[-1]} | I see {len(messages)} messages,"
        f" {len(humans)} from you; the first was: {humans[0]}"
    )


class EchoChatModel(GenericFakeChatModel):
    """A fake chat model streaming :func:`reply_to` (or ``text``) word by word."""

    messages: Iterator[AIMessage | str] = Field(default_factory=lambda: iter(()))
    text: str | None = None

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        answer = self.text if self.text is not None else reply_to(messages)
        return ChatResult(generations=[ChatGeneration(message=AIMessage(answer))])

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        for chunk in self._stream(messages, stop=stop, **kwargs):
            if run_manager is not None:
                await run_manager.on_llm_new_token(chunk.text, chunk=chunk)
            yield chunk


class ChatState(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]


async def answer(state: ChatState, config: RunnableConfig) -> dict[str, Any]:
    reply = await EchoChatModel().ainvoke(state["messages"], config)
    return {"messages": [reply]}


_chat = StateGraph(ChatState)
_chat.add_node("chat", answer)
_chat.add_edge(START, "chat")
_chat.add_edge("chat", END)
chat = _chat.compile()

# -- stream -------------------------------------------------------------------------


class StreamState(TypedDict, total=False):
    n: int
    tokens: bool
    done: int


async def emit(state: StreamState, config: RunnableConfig) -> StreamState:
    n = state.get("n", 10)
    if state.get("tokens"):
        await EchoChatModel(text=" ".join(["hello"] * n)).ainvoke([], config)
        return {"done": n}
    write = get_stream_writer()
    for i in range(n):
        write({"i": i, "token": "hello"})
    return {"done": n}


_stream = StateGraph(StreamState)
_stream.add_node("work", emit)
_stream.add_edge(START, "work")
_stream.add_edge("work", END)
stream = _stream.compile()
