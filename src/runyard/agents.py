"""Agents: what a run executes, the context it gets, and the registry of names.

An agent is an async callable ``(input, ctx) -> output``. Trio agents are
awaited directly; agents marked ``asyncio=True`` run on the asyncio side of
the server's trio-asyncio loop. Cancellation crosses both ways: a trio cancel
raises ``asyncio.CancelledError`` inside the asyncio agent, whose ``finally``
blocks run before the run's cleanup.
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib
import os
import sys
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, overload

import trio_asyncio

from .model import JSON

AgentFn = Callable[[Any, Any], Awaitable[Any]]

# Event names the server writes itself; an agent may not emit them.
RESERVED_EVENTS = frozenset({"metadata", "error", "end"})
_UNSET: Any = object()


class _Sink(Protocol):
    """What a context needs from the supervisor: a way to log an event."""

    async def emit(self, event: str, data: JSON) -> None: ...

    def append_nowait(self, event: str, data: JSON) -> bool:
        """Log an event now; True when the writer is full and the caller should wait."""

    async def wait_for_room(self) -> None: ...


class RunContext:
    """What an agent knows of its run, and how it talks back.

    ``emit`` is a checkpoint: a cancellation may land there (and back-to-back
    emits let other tasks run at least once a millisecond). Once
    ``set_result`` has been called, a cancellation that lands afterwards
    leaves the run ``success`` with that result.
    """

    def __init__(
        self,
        sink: _Sink,
        *,
        run_id: str,
        thread_id: str,
        metadata: dict[str, JSON],
        config: dict[str, JSON],
        stream_mode: list[str],
        attempt: int = 1,
        owner: str = "",
        options: dict[str, JSON] | None = None,
        host: Any = None,
    ) -> None:
        self._sink = sink
        self.run_id = run_id
        self.thread_id = thread_id
        self.metadata = metadata
        self.config = config
        self.stream_mode = stream_mode
        self.attempt = attempt
        self.owner = owner
        # LangGraph's run options (command, checkpoint, interrupt_before, ...), as sent.
        self.options = options or {}
        # What the server lends graph runs (saver, memory store); None for plain agents.
        self.host = host
        self.has_result = False
        self.result: JSON = None
        # A graph run's state once it ended: values and pending interrupts (a ThreadState).
        self.thread_state: Any = None

    @overload
    async def emit(self, data: JSON, /) -> None: ...
    @overload
    async def emit(self, event: str, data: JSON, /) -> None: ...

    async def emit(self, event_or_data: JSON, data: JSON = _UNSET, /) -> None:
        """Append an event to the run's log: ``emit(data)`` or ``emit(event, data)``.

        The event name defaults to ``custom``.
        """
        await self._sink.emit(*_named(event_or_data, data))

    def set_result(self, output: JSON) -> None:
        """Fix the run's output now; the run stays ``success`` even if cancelled later."""
        self.result = output
        self.has_result = True


class AsyncioRunContext(RunContext):
    """The context an asyncio agent gets: ``emit`` is an asyncio coroutine.

    It logs the event at once, on the asyncio side (both sides run on one
    thread, in one trio run), and crosses to trio only to wait while the
    writer is full: a crossing per event cost more than the event itself.
    """

    async def emit(self, event_or_data: JSON, data: JSON = _UNSET, /) -> None:
        if self._sink.append_nowait(*_named(event_or_data, data)):
            await trio_asyncio.trio_as_aio(self._sink.wait_for_room)()
        else:
            await asyncio.sleep(0)  # every emit is a point where a cancel may land


def _named(event_or_data: JSON, data: JSON) -> tuple[str, JSON]:
    """``(event, data)`` of ``emit(data)`` or ``emit(event, data)``, the name checked."""
    if data is _UNSET:
        event, data = "custom", event_or_data
    else:
        event = event_or_data
    if not isinstance(event, str) or not event or event in RESERVED_EVENTS:
        raise ValueError(f"agents cannot emit events named {event!r}")
    if any(c in event for c in "\r\n\0"):
        raise ValueError("an event name cannot contain CR, LF or NUL")
    return event, data


@dataclasses.dataclass(frozen=True, slots=True)
class Agent:
    """A named agent. ``asyncio=True`` runs it on the asyncio side."""

    name: str
    fn: AgentFn
    asyncio: bool = False
    description: str = ""
    graph: Any = None  # the compiled LangGraph graph behind a graph agent, else None

    async def invoke(self, input: JSON, ctx: RunContext) -> JSON:
        if self.asyncio:
            return await trio_asyncio.aio_as_trio(self.fn)(input, ctx)
        return await self.fn(input, ctx)


def agent(
    name: str | None = None, *, asyncio: bool = False, description: str = ""
) -> Callable[[AgentFn], Agent]:
    """Decorator: turn ``async def fn(input, ctx)`` into an :class:`Agent`."""

    def wrap(fn: AgentFn) -> Agent:
        doc = description or (fn.__doc__ or "").strip().split("\n")[0]
        return Agent(name or fn.__name__, fn, asyncio=asyncio, description=doc)

    return wrap


def load_agent(spec: str, name: str | None = None) -> Agent:
    """Import ``module:attribute``: an :class:`Agent` or a plain async function.

    Modules are found from the working directory too, as with ``python -m``.
    """
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name or not attribute:
        raise ValueError(f"agent {spec!r} must look like 'package.module:attribute'")
    try:
        target: Any = importlib.import_module(module_name)
        for part in attribute.split("."):
            target = getattr(target, part)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"agent {spec!r} cannot be imported: {exc}") from exc
    if isinstance(target, Agent):
        return target if name is None else dataclasses.replace(target, name=name)
    if hasattr(target, "astream") and hasattr(target, "get_graph"):
        from .langgraph import graph_agent  # the optional extra

        return graph_agent(name or attribute.rsplit(".", 1)[-1], target)
    if not callable(target):
        raise ValueError(f"agent {spec!r} is not callable")
    return Agent(name or attribute.rsplit(".", 1)[-1], target)


class AgentRegistry:
    """Agents by name; each is both an ``assistant_id`` and a ``graph_id``."""

    def __init__(self, agents: list[Agent] | None = None) -> None:
        self._agents: dict[str, Agent] = {}
        for a in agents or []:
            self.add(a)

    def add(self, a: Agent) -> None:
        self._agents[a.name] = a

    def get(self, name: str) -> Agent | None:
        return self._agents.get(name)

    def names(self) -> list[str]:
        return sorted(self._agents)

    def all(self) -> list[Agent]:
        return [self._agents[n] for n in self.names()]

    @property
    def needs_asyncio(self) -> bool:
        return any(a.asyncio for a in self._agents.values())
