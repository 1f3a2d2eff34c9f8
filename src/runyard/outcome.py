"""How a run ends: its outcome, and the final state that persists it.

A run's terminal status is decided from what happened, in this order: the
result was set (returned, or ``ctx.set_result`` before a cancel landed) →
``success``; the run's events could not be stored → ``error``; the agent
raised → ``error`` with a safe message; the timeout fired → ``timeout``;
cancelled → ``interrupted`` with the reason given (``shutdown`` when nobody
gave one: the whole supervisor was cancelled).

:func:`final_state` is the one builder of what the end of a run writes, for
a run that ends here and for one that recovery ends after a crash. A run
with a ``webhook`` puts it in the outbox with that final state (:func:`webhook_of`).
"""

from __future__ import annotations

import dataclasses
import logging

from .errors import AgentError, LimitExceeded, StoreError
from .events import RunLog
from .model import (
    JSON,
    CancelReason,
    Delivery,
    ErrorInfo,
    Event,
    Run,
    RunStatus,
    ThreadStatus,
    dumps,
    thread_status_after,
)
from .store import FinalState, ThreadState
from .wire import iso, run_json

log = logging.getLogger("runyard.outcome")


@dataclasses.dataclass(frozen=True, slots=True)
class Outcome:
    status: RunStatus
    cancel_reason: CancelReason | None = None
    error: ErrorInfo | None = None
    output: JSON = None


STORE_FAILED = Outcome(
    RunStatus.ERROR, error=ErrorInfo("StoreError", "the run's events could not be stored")
)
# A run that a dead process was executing.
RESTARTED = Outcome(RunStatus.INTERRUPTED, CancelReason.RESTART)


def timed_out(timeout: float | None) -> Outcome:
    message = f"the run exceeded its timeout of {timeout} s"
    return Outcome(RunStatus.TIMEOUT, CancelReason.TIMEOUT, ErrorInfo("TimeoutError", message))


def failed(run: Run, exc: Exception) -> Outcome:
    """The agent raised: a safe message for clients, the details to the log."""
    if isinstance(exc, AgentError):
        info = ErrorInfo("AgentError", exc.message)
    elif isinstance(exc, LimitExceeded):
        info = ErrorInfo("LimitExceeded", str(exc))
    elif isinstance(exc, StoreError):
        info = ErrorInfo("StoreError", "the run's state could not be stored")
    else:
        info = ErrorInfo(type(exc).__name__, "the agent failed; details are in the server log")
    log.error(
        "run.failed", exc_info=exc, extra={"run_id": run.run_id, "assistant_id": run.assistant_id}
    )
    return Outcome(RunStatus.ERROR, error=info)


def settled(has_result: bool, result: JSON, reason: CancelReason | None) -> Outcome:
    """The outcome of a run that neither failed nor timed out: a result, or a cancel."""
    if has_result:
        return Outcome(RunStatus.SUCCESS, output=result)
    return Outcome(RunStatus.INTERRUPTED, reason or CancelReason.SHUTDOWN)


def final_state(
    run: Run,
    outcome: Outcome,
    run_log: RunLog,
    *,
    at: float,
    last_values: str | None = None,
    thread_idle_after: bool = True,
    thread_state: ThreadState | None = None,
) -> FinalState:
    """What the end of ``run`` writes in one transaction, its last events included.

    The events take the log's next ids: ``metadata`` first if the log is
    still empty (a run that died before its first commit), the output as a
    last ``values`` event on success (unless the agent's last ``values``
    was exactly that), ``error`` on failure, and ``end``. The thread's
    status changes only when no other run of it is waiting
    (``thread_idle_after``); a graph's ``thread_state`` gives the thread its
    values and pending interrupts. A rollback deletes the run instead (and
    sends no webhook: there is no run left to tell of).
    """
    rid = run.run_id
    events: list[Event] = []
    if run_log.next_seq == 0:
        events.append(Event.make(rid, run_log.take_seq(), "metadata", metadata_of(run)))
    if outcome.status is RunStatus.SUCCESS and last_values != dumps(outcome.output):
        events.append(Event.make(rid, run_log.take_seq(), "values", outcome.output))
    if outcome.error is not None:
        events.append(Event.make(rid, run_log.take_seq(), "error", outcome.error.to_json()))
    end = {"run_id": rid, "status": str(outcome.status)}
    events.append(Event.make(rid, run_log.take_seq(), "end", end))
    thread_status: ThreadStatus | None = None
    if thread_idle_after:
        pending = thread_state is not None and bool(thread_state.interrupts or thread_state.waiting)
        thread_status = thread_status_after(outcome.status, pending_interrupts=pending)
    delete = outcome.cancel_reason is CancelReason.ROLLBACK
    values = thread_state.values if thread_state is not None else outcome.output
    return FinalState(
        run_id=rid,
        thread_id=run.thread_id,
        status=outcome.status,
        cancel_reason=outcome.cancel_reason,
        error=outcome.error,
        output=outcome.output,
        updated_at=at,
        events=events,
        thread_status=thread_status,
        delete=delete,
        thread_state=thread_state,
        webhook=None if delete else webhook_of(run, outcome, at=at, values=values),
    )


def webhook_of(run: Run, outcome: Outcome, *, at: float, values: JSON) -> Delivery | None:
    """The outbox row of a run with a ``webhook``: the reference server's body, the run
    as it ended (``error`` included) with its start and end times and its ``values``."""
    url = run.kwargs.get("webhook")
    if not isinstance(url, str) or not url:
        return None
    ended = dataclasses.replace(
        run,
        status=outcome.status,
        cancel_reason=outcome.cancel_reason,
        error=outcome.error,
        output=outcome.output,
        updated_at=at,
    )
    # Still the in-memory row: its last change was the running mark, if it ran.
    started = iso(run.updated_at) if run.status is RunStatus.RUNNING else None
    body: dict[str, JSON] = {
        **run_json(ended),
        "run_started_at": started,
        "run_ended_at": iso(at),
        "values": values if outcome.status is RunStatus.SUCCESS else None,
    }
    return Delivery(
        run_id=run.run_id,
        thread_id=run.thread_id,
        owner=run.owner,
        url=url,
        body=body,
        created_at=at,
        next_attempt_at=at,
        updated_at=at,
    )


def metadata_of(run: Run) -> dict[str, JSON]:
    """The data of a run's ``metadata`` event, the first of every log."""
    return {"run_id": run.run_id, "attempt": run.attempt}


def apply(run: Run, outcome: Outcome, at: float) -> None:
    """Bring the in-memory row in line with the final state."""
    run.status = outcome.status
    run.cancel_reason = outcome.cancel_reason
    run.error = outcome.error
    run.output = outcome.output
    run.updated_at = at
