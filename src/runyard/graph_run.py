"""One run of a LangGraph graph: its options, its stream, its checkpoints, its state.

A graph runs on the graph loop (:mod:`runyard.graph_loop`, a plain asyncio
loop in a thread of its own) with runyard's saver and memory store attached
(:class:`GraphHost`); :meth:`GraphLease.run` starts it there from the run's
trio task, and :class:`GraphRunContext` is what the graph side sees of the
run. Its stream is read with ``subgraphs=True`` and
with LangGraph's ``checkpoints`` mode always on, whatever the client asked:
that chunk tells where each checkpoint falls among the events, so the run's
:class:`~runyard.checkpointer.CheckpointGate` lets a checkpoint commit only
behind the events the graph streamed before it. Events are logged under the
names and in the shapes LangGraph clients expect (:mod:`runyard.graph_stream`);
a subgraph's as ``mode|ns1|ns2`` when the client asked for
``stream_subgraphs``. With ``events`` asked the same chunks come out of
LangChain's ``astream_events``, in the same order, between its own events.

When the graph ends (finished, or stopped at an interrupt) what is still held
is committed and the thread's state is read back from the saver: its values
become the thread's, and its pending interrupts make the thread
``interrupted``. A cancel or a failure drops what is still held: the thread
keeps the last checkpoint whose events were logged.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from langgraph.types import Command, Send

from .agents import RunContext
from .checkpointer import CheckpointGate, RunSink, RunyardSaver, current_gate
from .commit import CommitWriter
from .graph_loop import GraphLoop
from .graph_stream import GraphStream
from .graph_values import jsonable
from .model import JSON
from .store import Store, ThreadState

# The root modes whose events wait in the gate for their step's checkpoint.
STATE_MODES = frozenset({"values", "updates"})


class GraphHost:
    """What the server lends every graph run: its saver, memory store and gates."""

    def __init__(
        self,
        store: Store,
        writer: CommitWriter,
        loop: GraphLoop,
        memory_for: Callable[[str], Any] | None = None,
    ) -> None:
        self.loop = loop
        self.saver = RunyardSaver(store, writer, loop)
        self._store = store
        self._writer = writer
        self._memory_for = memory_for  # owner -> a LangGraph BaseStore

    def attach(self, graph: Any, owner: str) -> Any:
        """``graph`` with runyard's saver (and the owner's memory store) attached."""
        update: dict[str, Any] = {"checkpointer": self.saver}
        if self._memory_for is not None:
            update["store"] = self._memory_for(owner)
        return graph.copy(update=update)

    def for_run(self, thread_id: str, sink: RunSink) -> GraphLease:
        """What one run gets: this host, and a gate that logs through ``sink``."""
        gate = CheckpointGate(thread_id, self.loop, sink, self._writer, self._store)
        return GraphLease(self, gate)


@dataclasses.dataclass(frozen=True, slots=True)
class GraphLease:
    """A run's share of the :class:`GraphHost`: the host and the run's own gate."""

    host: GraphHost
    gate: CheckpointGate

    async def run(self, graph: Any, graph_id: str, input: JSON, ctx: RunContext) -> JSON:
        """Run ``graph`` on the graph loop for ``ctx``'s run (call from trio)."""
        side = GraphRunContext(ctx, self)
        self.host.saver.read_ahead(self.gate, *start_point(ctx.options))
        output = await self.host.loop.run(run_graph, graph, graph_id, input, side)
        ctx.thread_state = side.thread_state
        return output


class GraphRunContext:
    """What the graph loop's side sees of a run: its request, and its way out."""

    def __init__(self, ctx: RunContext, lease: GraphLease) -> None:
        self.run_id = ctx.run_id
        self.thread_id = ctx.thread_id
        self.metadata = ctx.metadata
        self.config = ctx.config
        self.stream_mode = ctx.stream_mode
        self.owner = ctx.owner
        self.options = ctx.options
        self.lease = lease
        self.gate = lease.gate
        # The thread's state once the graph ended (read back from the saver).
        self.thread_state: ThreadState | None = None


def graph_config(ctx: GraphRunContext, graph_id: str) -> tuple[dict[str, Any], Any]:
    """The RunnableConfig of a run, and the ``context`` it passes to the graph."""
    config = dict(ctx.config)
    context = config.pop("context", None)
    configurable = dict(config.get("configurable") or {})
    configurable.setdefault("thread_id", ctx.thread_id)
    configurable.setdefault("run_id", ctx.run_id)
    checkpoint = ctx.options.get("checkpoint")
    if isinstance(checkpoint, dict):
        for key in ("checkpoint_id", "checkpoint_ns", "checkpoint_map"):
            if checkpoint.get(key) is not None:
                configurable[key] = checkpoint[key]
    config["configurable"] = configurable
    config["metadata"] = {
        **(config.get("metadata") or {}),
        "run_id": ctx.run_id,
        "graph_id": graph_id,
        "assistant_id": ctx.metadata.get("assistant_id", graph_id),
    }
    return config, context


def start_point(options: dict[str, Any]) -> tuple[str, str | None]:
    """(checkpoint_ns, checkpoint_id) of the checkpoint a run's graph loads first:
    the one its ``checkpoint`` names, or (None) the thread's newest."""
    checkpoint = options.get("checkpoint")
    if not isinstance(checkpoint, dict):
        return "", None
    return checkpoint.get("checkpoint_ns") or "", checkpoint.get("checkpoint_id")


def command(value: JSON) -> Command[Any]:
    """A LangGraph ``Command`` from the run body's ``command`` object."""
    goto = value.get("goto")
    if isinstance(goto, dict):
        goto = Send(goto["node"], goto.get("input"))
    elif isinstance(goto, list):
        goto = [Send(g["node"], g.get("input")) if isinstance(g, dict) else g for g in goto]
    return Command(
        update=value.get("update"),
        resume=value.get("resume"),
        goto=goto if goto is not None else (),
    )


async def run_graph(graph: Any, graph_id: str, input: JSON, ctx: GraphRunContext) -> JSON:
    """Run ``graph`` for ``ctx``'s run; its last ``values`` chunk is the output."""
    options = ctx.options
    view = GraphStream(ctx.stream_mode, subgraphs=bool(options.get("stream_subgraphs")))
    config, context = graph_config(ctx, graph_id)
    payload = command(options["command"]) if options.get("command") else input
    runnable = ctx.lease.host.attach(graph, ctx.owner)
    token = current_gate.set(ctx.gate)
    try:
        stream = view.open(
            runnable,
            payload,
            config,
            context=context,
            interrupt_before=options.get("interrupt_before"),
            interrupt_after=options.get("interrupt_after"),
            durability=options.get("durability"),
        )
        try:
            final = await _forward(stream, view, ctx)
        finally:
            await stream.aclose()
        await ctx.gate.release_all()
        ctx.thread_state = await _thread_state(runnable, ctx.thread_id)
    finally:
        current_gate.reset(token)
    if final is None:  # nothing left to run (a resumed run that had finished)
        return ctx.thread_state.values
    return final


async def _forward(stream: Any, view: GraphStream, ctx: GraphRunContext) -> Any:
    """Log the run's events as the graph streams them, each checkpoint behind its events.

    Returns the last root ``values`` chunk, as JSON. Root ``values`` and ``updates``
    wait in the gate for their step's checkpoint, unless the graph saves only
    at exit (nothing to keep them in step with); every other event is logged
    at once. A checkpoint is announced once, though ``debug`` repeats it.
    """
    gate = ctx.gate
    in_step = ctx.options.get("durability") != "exit"
    last: Any = None  # the last root values chunk
    last_json: Any = None  # the same as JSON, when it was logged (converted once)
    announced: tuple[str, str] | None = None
    async for namespace, mode, chunk in stream:
        if not namespace and mode == "values":
            last, last_json = chunk, None
        for name, data in view.shape(namespace, mode, chunk):
            if name == "values":
                last_json = data
            if in_step and not namespace and mode in STATE_MODES:
                gate.hold_event(name, data)
            else:
                gate.log(name, data)
        await gate.pace()
        if (written := _checkpoint_of(mode, chunk)) in (None, announced):
            continue
        announced = written
        ns, checkpoint_id = written
        if not ns and in_step:
            await gate.commit(checkpoint_id)
        else:
            gate.release(ns, checkpoint_id)
    if last is None:
        return None
    return jsonable(last) if last_json is None else last_json


def _checkpoint_of(mode: str, chunk: Any) -> tuple[str, str] | None:
    """(namespace, id) of the checkpoint a ``checkpoints`` (or debug) chunk announces."""
    if mode == "debug" and isinstance(chunk, dict) and chunk.get("type") == "checkpoint":
        chunk = chunk.get("payload")
    elif mode != "checkpoints":
        return None
    configurable = (chunk or {}).get("config", {}).get("configurable", {})
    checkpoint_id = configurable.get("checkpoint_id")
    if checkpoint_id is None:
        return None
    return configurable.get("checkpoint_ns", ""), checkpoint_id


async def _thread_state(graph: Any, thread_id: str) -> ThreadState:
    """The thread's values and pending interrupts, read back from the saver."""
    state = await graph.aget_state({"configurable": {"thread_id": thread_id}})
    interrupts = {
        task.id: [{"id": i.id, "value": jsonable(i.value)} for i in task.interrupts]
        for task in state.tasks
        if task.interrupts
    }
    return ThreadState(jsonable(state.values), interrupts, waiting=bool(state.next))
