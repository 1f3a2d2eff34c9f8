"""The JSON shapes the engine itself sends: a run, and times as RFC 3339 text.

The HTTP API answers runs in this shape (:mod:`runyard.http.render` re-exports
it) and a webhook's body is built on it (:mod:`runyard.webhooks`), so both
say the same thing of a run. The field names and formats are the LangGraph
API's (``/work/shared/API.md``: "Run object").
"""

from __future__ import annotations

import time

from .model import JSON, Run


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
