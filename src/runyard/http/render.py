"""The wire shapes: runs, threads, assistants and final results as JSON.

Pure functions of the model's data; the field names and formats are the
LangGraph API's (``/work/shared/API.md``: "Run object", "Thread object").
A run's shape lives in :mod:`runyard.wire`, since webhooks send it too.
"""

from __future__ import annotations

from ..model import JSON, Assistant, CancelReason, Run, RunStatus, Thread
from ..wire import iso as iso  # re-exported: the HTTP API and webhooks share them
from ..wire import run_json as run_json

# The fields of an assistant a search may ``select`` (all of them by default).
ASSISTANT_FIELDS = (
    "assistant_id", "graph_id", "name", "description", "config", "context",
    "created_at", "updated_at", "metadata", "version",
)  # fmt: skip


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
