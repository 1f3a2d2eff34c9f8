"""The wire shapes: runs, threads, assistants and final results as JSON.

Pure functions of the model's data; the field names and formats are the
LangGraph API's (``/work/shared/API.md``: "Run object", "Thread object").
"""

from __future__ import annotations

import time

from ..model import JSON, Assistant, CancelReason, Run, RunStatus, Thread

# The fields of an assistant a search may ``select`` (all of them by default).
ASSISTANT_FIELDS = (
    "assistant_id", "graph_id", "name", "description", "config", "context",
    "created_at", "updated_at", "metadata", "version",
)  # fmt: skip


def iso(ts: float) -> str:
    """Render a unix timestamp as an RFC 3339 string in UTC, as LangGraph does."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts % 1 * 1e6):06d}+00:00"


def run_json(run: Run) -> dict[str, JSON]:
    return {
        "run_id": run.run_id,
        "thread_id": run.thread_id,
        "assistant_id": run.assistant_id,
        "created_at": iso(run.created_at),
        "updated_at": iso(run.updated_at),
        "status": str(run.status),
        "metadata": run.metadata,
        "multitask_strategy": str(run.multitask_strategy),
        "kwargs": run.kwargs,
        "cancel_reason": None if run.cancel_reason is None else str(run.cancel_reason),
        "error": None if run.error is None else run.error.to_json(),
    }


def thread_json(thread: Thread) -> dict[str, JSON]:
    return {
        "thread_id": thread.thread_id,
        "created_at": iso(thread.created_at),
        "updated_at": iso(thread.updated_at),
        "metadata": thread.metadata,
        "status": str(thread.status),
        "values": thread.values,
        "interrupts": thread.interrupts,
    }


def thread_state_json(thread: Thread) -> dict[str, JSON]:
    """The state of a thread without checkpoints (no graph ran on it): its last output.

    The shape of a graph's ``ThreadState`` (``runyard.thread_state.state_json``),
    with a checkpoint that names no id.
    """
    return {
        "values": thread.values if thread.values is not None else {},
        "next": [],
        "tasks": [],
        "metadata": thread.metadata,
        "created_at": iso(thread.updated_at),
        "checkpoint": {
            "thread_id": thread.thread_id,
            "checkpoint_ns": "",
            "checkpoint_id": None,
            "checkpoint_map": {},
        },
        "parent_checkpoint": None,
        "interrupts": [],
        "checkpoint_id": None,
        "parent_checkpoint_id": None,
    }


def assistant_json(assistant: Assistant, select: tuple[str, ...] = ()) -> dict[str, JSON]:
    """An assistant as it is now; only the ``select`` fields when some are named."""
    whole: dict[str, JSON] = {
        "assistant_id": assistant.assistant_id,
        "graph_id": assistant.graph_id,
        "name": assistant.name,
        "description": assistant.description,
        "config": assistant.config,
        "context": assistant.context,
        "metadata": assistant.metadata,
        "version": assistant.version,
        "created_at": iso(assistant.created_at),
        "updated_at": iso(assistant.updated_at),
    }
    return {k: whole[k] for k in select} if select else whole


def assistant_version_json(version: Assistant) -> dict[str, JSON]:
    """One version of an assistant: made once, so it has no ``updated_at``."""
    made = assistant_json(version)
    del made["updated_at"]
    return made


def final_body(run: Run) -> JSON:
    """What /wait and /join answer: the values on success, ``__error__`` otherwise."""
    if run.status is RunStatus.SUCCESS:
        return run.output
    if run.error is not None:
        return {"__error__": run.error.to_json()}
    reason = run.cancel_reason or CancelReason.SHUTDOWN
    message = f"the run was {run.status} ({reason})"
    return {"__error__": {"error": "RunInterrupted", "message": message}}
