"""Recovery at start: settle what a process that died left unfinished.

A run the dead process was executing ends ``interrupted`` with
``cancel_reason: restart``: its log keeps every event that was committed,
then gets an ``end`` (and a ``metadata`` first if it had none), written
through the commit writer like any final state. A run that never started
(``pending``, or waiting for ``after_seconds``) starts now, its log
continuing where it was, its delay counted from when it was created.
A replica of a cluster recovers nothing at start (the other replicas end
a dead replica's runs); it starts the pending runs it claims from the
queue (:func:`start_claimed`).

Opt-in (the ``resume_graph_runs`` setting, or ``resume_on_restart`` on the
run): a LangGraph run that was running resumes from its thread's last
committed checkpoint instead, as a new attempt (a ``metadata`` event with the
attempt number continues its log, gapless); one that had committed no
checkpoint of its own starts over with its input. Its nodes after that
checkpoint run again, so a side effect in them may happen twice.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import trio

from .agents import AgentRegistry
from .commit import CommitWriter
from .coordinator import Coordinator
from .events import EventBus
from .model import RunRequest, RunStatus, now
from .outcome import RESTARTED, final_state
from .runner import Runner
from .store import Store

if TYPE_CHECKING:
    from .cluster import Claim

log = logging.getLogger("runyard.recovery")


async def recover(
    coordinator: Coordinator,
    store: Store,
    writer: CommitWriter,
    bus: EventBus,
    runner: Runner,
    agents: AgentRegistry,
    nursery: trio.Nursery,
    *,
    resume_graph_runs: bool = False,
) -> None:
    """End the orphans that were running (or resume the graph runs that may be);
    admit again the ones that never ran."""
    for run in await coordinator.orphaned_runs():
        last = await store.last_seq(run.run_id)
        agent = agents.get(run.graph_id)
        resumable = run.kwargs.get("resume_on_restart", resume_graph_runs)
        if run.status is RunStatus.RUNNING and agent and agent.graph is not None and resumable:
            run.attempt += 1
            await store.new_attempt(run.run_id, run.attempt, now())
            request = RunRequest.of(run)
            request.after_seconds = 0.0
            newest = await store.get_checkpoint(run.thread_id, "", None)
            if newest is not None and newest.run_id == run.run_id:
                # From the run's last checkpoint: no input, no command, no fork point.
                request.input = None
                for key in ("command", "checkpoint"):
                    request.options.pop(key, None)
            # Else the run saved nothing (it died before its input's checkpoint): it starts
            # over, input and all.
            runner.admit(nursery, run, request, agent, next_seq=last + 1)
            log.info("run.resumed", extra={"run_id": run.run_id, "attempt": run.attempt})
            continue
        if run.status is RunStatus.RUNNING:
            run_log = bus.open(run.run_id, next_seq=last + 1)
            try:
                await writer.finalize(run_log, final_state(run, RESTARTED, run_log, at=now()))
            finally:
                bus.forget(run.run_id)
            log.info("run.recovered", extra={"run_id": run.run_id, "status": "interrupted"})
            continue
        request = RunRequest.of(run)
        request.after_seconds = max(0.0, run.created_at + request.after_seconds - now())
        runner.admit(nursery, run, request, agent, next_seq=last + 1)
        log.info("run.restarted", extra={"run_id": run.run_id})


def start_claimed(
    claim: Claim, runner: Runner, agents: AgentRegistry, nursery: trio.Nursery
) -> None:
    """Start a run this replica claimed from the cluster's queue (one that another
    replica admitted and left, or whose replica died): running already, its log
    continued, its cancel (asked before it started) delivered at once."""
    run = claim.run
    request = RunRequest.of(run)
    request.after_seconds = 0.0  # the claim came when it was due
    agent = agents.get(run.graph_id)
    handle = runner.admit(
        nursery, run, request, agent, next_seq=claim.next_seq, running_at=run.updated_at
    )
    if claim.cancel is not None:
        handle.cancel(claim.cancel)
    log.info("run.claimed", extra={"run_id": run.run_id})
