"""Two agents to copy from: one trio, one asyncio. Served by examples/runyard.toml."""

import asyncio

import trio

from runyard import AgentError, AsyncioRunContext, RunContext, agent


@agent(description="Counts to n, one event per step.")
async def counter(input, ctx: RunContext):
    n = input.get("n", 3) if isinstance(input, dict) else 3
    if not isinstance(n, int) or n < 0:
        raise AgentError("input field 'n' must be a whole number")  # clients see this
    try:
        for i in range(n):
            await ctx.emit({"i": i})  # an event named "custom"
            await trio.sleep(0.05)
        await ctx.emit("updates", {"counted": n})  # an event with a name of your choice
        return {"count": n}  # the run's output, and the thread's values
    finally:
        pass  # runs on cancellation too; runyard persists the final state after it


@agent(asyncio=True, description="Streams words like a language model (asyncio).")
async def talker(input, ctx: AsyncioRunContext):
    text = input.get("text", "hello from asyncio") if isinstance(input, dict) else str(input)
    words = text.split()
    for word in words:
        chunk = {"type": "AIMessageChunk", "content": word + " "}
        await ctx.emit("messages", [chunk, {"run_id": ctx.run_id}])
        await asyncio.sleep(0.02)  # a trio cancel arrives here as CancelledError
    return {"text": text}
