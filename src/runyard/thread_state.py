"""A graph thread's state and history, read from and written to the checkpoint saver.

A thread's graph is the one its last run executed (``metadata["graph_id"]``);
its state is what that graph, with runyard's saver attached, reads back:
LangGraph's ``aget_state``, ``aget_state_history`` and ``aupdate_state``, on
the graph loop (:mod:`runyard.graph_loop`). Call these methods from trio.

A thread without a graph (it ran plain agents, or nothing yet) has no
checkpoints: :meth:`ThreadStates.get` answers None and the caller shows the
thread's own values, the output of its last successful run.

States are answered as LangGraph's wire ``ThreadState`` (plain JSON), since the
shape is LangGraph's own: ``values``, ``next``, ``tasks``, ``metadata``,
``created_at``, ``checkpoint``, ``parent_checkpoint``, ``interrupts``.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import Awaitable
from typing import Any, TypeVar

import trio

from .agents import AgentRegistry
from .errors import AgentError, BadRequest, Invalid, NotFound, RunyardError, StoreError
from .graph_values import jsonable
from .model import JSON, Thread, ThreadStatus, now
from .store import Store, ThreadState

log = logging.getLogger("runyard.thread_state")

T = TypeVar("T")

# How long an update may take to commit its checkpoint and the thread's row once
# begun: it is shielded from a client that leaves, so the two never disagree.
UPDATE_DEADLINE = 30.0  # seconds
# The longest part of LangGraph's own message about a refused update that is shown.
MAX_REASON = 300  # characters
# What a failed task says: an exception's text may hold what the node saw (as a run's error).
NODE_FAILED = "the node failed; details are in the server log"


@dataclasses.dataclass(frozen=True, slots=True)
class CheckpointRef:
    """Which checkpoint a request names: an id (None: the newest) in a namespace."""

    checkpoint_id: str | None = None
    checkpoint_ns: str = ""
    checkpoint_map: dict[str, JSON] | None = None

    def config(self, thread_id: str) -> dict[str, Any]:
        configurable: dict[str, Any] = {"thread_id": thread_id, "checkpoint_ns": self.checkpoint_ns}
        if self.checkpoint_id is not None:
            configurable["checkpoint_id"] = self.checkpoint_id
        if self.checkpoint_map:
            configurable["checkpoint_map"] = self.checkpoint_map
        return {"configurable": configurable}


NEWEST = CheckpointRef()


class ThreadStates:
    """The supervisor's thread-state operations (``supervisor.states``)."""

    def __init__(self, store: Store, agents: AgentRegistry, graph_host: Any) -> None:
        self._store = store
        self._agents = agents
        self._host = graph_host  # a GraphHost, or None when no graph is served

    def graph_of(self, thread: Thread) -> Any:
        """The thread's compiled graph with the saver attached; None if it has none."""
        graph_id = thread.metadata.get("graph_id")
        agent = self._agents.get(graph_id) if isinstance(graph_id, str) else None
        if agent is None or agent.graph is None or self._host is None:
            return None
        return self._host.attach(agent.graph, thread.owner)

    async def get(
        self, thread: Thread, at: CheckpointRef = NEWEST, *, subgraphs: bool = False
    ) -> JSON | None:
        """The thread's state at ``at``; None when it has no checkpoint at all.

        Raises :class:`NotFound` for a checkpoint id the thread does not have.
        """
        graph = self.graph_of(thread)
        snapshot = None
        if graph is not None:
            config = at.config(thread.thread_id)
            snapshot = await self._on_graph_loop(graph.aget_state, config, subgraphs=subgraphs)
        if snapshot is None or snapshot.created_at is None:  # nothing saved there
            if at.checkpoint_id is not None:
                raise NotFound(f"checkpoint {at.checkpoint_id} not found")
            return None
        return state_json(snapshot)

    async def history(
        self,
        thread: Thread,
        *,
        limit: int,
        before: str | None = None,
        metadata: dict[str, JSON] | None = None,
        at: CheckpointRef = NEWEST,
    ) -> list[JSON] | None:
        """The thread's states, newest first; None when it has no graph."""
        graph = self.graph_of(thread)
        if graph is None:
            return None
        before_config = None if before is None else {"configurable": {"checkpoint_id": before}}

        async def collect() -> list[JSON]:
            history = graph.aget_state_history(
                at.config(thread.thread_id),
                filter=metadata or None,
                before=before_config,
                limit=limit,
            )
            return [state_json(snapshot) async for snapshot in history]

        found: list[JSON] = await self._on_graph_loop(collect)
        return found

    async def update(
        self,
        thread: Thread,
        values: JSON,
        *,
        as_node: str | None = None,
        at: CheckpointRef = NEWEST,
    ) -> JSON:
        """Apply ``values`` as if ``as_node`` wrote them (``"__copy__"``: fork ``at``).

        The caller holds the thread quiet (no run pending or running; see
        :meth:`~runyard.threads.Threads.quiet`). The new checkpoint is
        committed, then the thread's values, interrupts and status follow it;
        both are shielded from a caller that leaves, within ``UPDATE_DEADLINE``.
        Answers ``{"checkpoint": ...}``, the new checkpoint.
        """
        graph = self.graph_of(thread)
        if graph is None:
            raise BadRequest(
                f"thread {thread.thread_id} has no graph: run a graph on it first,"
                " or set its metadata's graph_id"
            )
        if at.checkpoint_id is not None:
            await self.get(thread, at)  # NotFound for a checkpoint it lacks
        with trio.move_on_after(UPDATE_DEADLINE, shield=True):
            written = await _refused_as_invalid(
                self._on_graph_loop(
                    graph.aupdate_state, at.config(thread.thread_id), values, as_node=as_node
                )
            )
            newest = await self._on_graph_loop(graph.aget_state, NEWEST.config(thread.thread_id))
            state = thread_state_of(newest)
            # As LangGraph's server does: a graph with steps left waits, interrupted.
            status = ThreadStatus.INTERRUPTED if newest.next else ThreadStatus.IDLE
            await self._store.set_thread_state(thread.thread_id, state, status, now())
            checkpoint = _checkpoint_json(written)
            return {
                "checkpoint": checkpoint,
                # LangGraph's older names for the same, still sent by its server.
                "configurable": checkpoint,
                "checkpoint_id": None if checkpoint is None else checkpoint["checkpoint_id"],
            }
        raise StoreError(f"updating thread {thread.thread_id} took over {UPDATE_DEADLINE} s")

    async def _on_graph_loop(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """``await fn(*args, **kwargs)`` on the graph loop, where the saver lives."""
        return await self._host.loop.run(functools.partial(fn, *args, **kwargs))


async def _refused_as_invalid(call: Awaitable[T]) -> T:
    """Await LangGraph applying an update: values its graph refuses are :class:`Invalid`."""
    try:
        return await call
    except RunyardError:
        raise  # the store's own errors keep their meaning
    except Exception as exc:
        log.info("thread_state.update_refused", extra={"error": type(exc).__name__})
        reason = str(exc)[:MAX_REASON] if _is_langgraph_refusal(exc) else type(exc).__name__
        raise Invalid(f"the graph refused the update: {reason}") from None


def _is_langgraph_refusal(exc: Exception) -> bool:
    """LangGraph's own update errors (their text is LangGraph's, about the request)."""
    from langgraph.errors import EmptyInputError, InvalidUpdateError

    return isinstance(exc, InvalidUpdateError | EmptyInputError)


def thread_state_of(snapshot: Any) -> ThreadState:
    """What the thread's row keeps of a state: its values and pending interrupts."""
    interrupts = {
        task.id: [_interrupt_json(i) for i in task.interrupts]
        for task in snapshot.tasks
        if task.interrupts
    }
    return ThreadState(values=jsonable(snapshot.values), interrupts=interrupts)


def state_json(snapshot: Any) -> dict[str, JSON]:
    """A LangGraph ``StateSnapshot`` as the wire ``ThreadState``."""
    checkpoint = _checkpoint_json(snapshot.config)
    parent = _checkpoint_json(snapshot.parent_config)
    return {
        "values": jsonable(snapshot.values),
        "next": list(snapshot.next),
        "tasks": [_task_json(task) for task in snapshot.tasks],
        "metadata": jsonable(snapshot.metadata),
        "created_at": snapshot.created_at,
        "checkpoint": checkpoint,
        "parent_checkpoint": parent,
        "interrupts": [_interrupt_json(i) for i in getattr(snapshot, "interrupts", ())],
        # LangGraph's older names, still sent by its server.
        "checkpoint_id": None if checkpoint is None else checkpoint["checkpoint_id"],
        "parent_checkpoint_id": None if parent is None else parent["checkpoint_id"],
    }


def _task_json(task: Any) -> dict[str, JSON]:
    nested = task.state
    is_snapshot = nested is not None and hasattr(nested, "values") and hasattr(nested, "next")
    return {
        "id": task.id,
        "name": task.name,
        "path": jsonable(task.path),
        "error": None if task.error is None else _error_json(task.error),
        "interrupts": [_interrupt_json(i) for i in task.interrupts],
        "checkpoint": (
            jsonable(nested["configurable"]) if nested is not None and not is_snapshot else None
        ),
        "state": state_json(nested) if is_snapshot else None,
        "result": jsonable(getattr(task, "result", None)),
    }


def _error_json(error: Any) -> dict[str, str]:
    if isinstance(error, AgentError):
        return {"error": "AgentError", "message": error.message}
    return {
        "error": type(error).__name__,
        "message": "the node failed; details are in the server log",
    }


def _interrupt_json(interrupt: Any) -> dict[str, JSON]:
    return {"id": interrupt.id, "value": jsonable(interrupt.value)}


def _checkpoint_json(config: Any) -> dict[str, JSON] | None:
    """The checkpoint a RunnableConfig names, or None when it names none."""
    configurable = (config or {}).get("configurable") or {}
    checkpoint_id = configurable.get("checkpoint_id")
    if not checkpoint_id:
        return None
    return {
        "thread_id": str(configurable.get("thread_id", "")),
        "checkpoint_ns": configurable.get("checkpoint_ns") or "",
        "checkpoint_id": checkpoint_id,
        "checkpoint_map": jsonable(configurable.get("checkpoint_map") or {}),
    }
