"""The agents that ship with runyard, for the docs, the tests and the benchmarks."""

from __future__ import annotations

import asyncio

import trio

from .agents import Agent, AgentRegistry, AsyncioRunContext, RunContext, agent
from .errors import AgentError
from .model import JSON

DEFAULT_TEXT = "runyard streams every token of this sentence, and a reload resumes it."


def _number(input: JSON, key: str, default: float) -> float:
    value = input.get(key, default) if isinstance(input, dict) else default
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise AgentError(f"input field '{key}' must be a number >= 0")
    return float(value)


@agent(description="Emits n custom events {i, token}, `delay` seconds apart; returns {done: n}.")
async def emitter(input: JSON, ctx: RunContext) -> JSON:
    n = int(_number(input, "n", 10))
    delay = _number(input, "delay", 0)
    for i in range(n):
        await ctx.emit({"i": i, "token": "hello"})
        if delay:
            await trio.sleep(delay)
    return {"done": n}


@agent(description="Sleeps `delay` seconds; returns {done: 1}.")
async def sleepy(input: JSON, ctx: RunContext) -> JSON:
    await trio.sleep(_number(input, "delay", 1))
    return {"done": 1}


@agent(description="Returns its input.")
async def echo(input: JSON, ctx: RunContext) -> JSON:
    return input


class DemoFailure(RuntimeError):
    pass


@agent(description="Fails after `delay` seconds with an internal error clients never see.")
async def failing(input: JSON, ctx: RunContext) -> JSON:
    await trio.sleep(_number(input, "delay", 0))
    # The kind of text a real failure carries; it must stay in the server log.
    raise DemoFailure("upstream refused api_key=sk-demo-SECRET-0000 for db://admin:hunter2@db")


@agent(
    asyncio=True,
    description="An asyncio agent: streams `text` as tokens, `rate` per second; returns the text.",
)
async def typewriter(input: JSON, ctx: AsyncioRunContext) -> JSON:
    text = input.get("text", DEFAULT_TEXT) if isinstance(input, dict) else DEFAULT_TEXT
    if not isinstance(text, str):
        raise AgentError("input field 'text' must be a string")
    rate = _number(input, "rate", 50)
    tokens: list[str] = [t + " " for t in text.split(" ")]
    tokens[-1] = tokens[-1].rstrip(" ")
    for i, token in enumerate(tokens):
        chunk = {"type": "AIMessageChunk", "id": f"msg-{ctx.run_id}", "content": token}
        await ctx.emit("messages", [chunk, {"i": i, "run_id": ctx.run_id}])
        if rate:
            await asyncio.sleep(1 / rate)
    return {"text": text}


DEMO_AGENTS: list[Agent] = [emitter, sleepy, echo, failing, typewriter]


def demo_registry() -> AgentRegistry:
    return AgentRegistry(list(DEMO_AGENTS))
