"""Cancellation at every checkpoint: run a scenario once per scheduling step.

A trial runs a scenario in a fresh ``trio.run`` with a fresh SQLite file.
It runs on the real clock, with millisecond sleeps in the agents: under
``trio.testing.MockClock`` the trio-asyncio loop never finished closing
(observed with trio-asyncio 0.16), and a virtual clock that leaps while a
SQLite thread works trips deadlines that real time never reaches. A :class:`trio.abc.Instrument`
counts the scheduling steps of the target task (``before_task_step``) and, at
step N, calls the scenario's ``inject`` (which cancels a scope of its choice).
:func:`explore` runs N = 0, 1, 2, … until a trial ends without reaching N,
so every step of the target is hit once, whatever its count on this run.

trio shuffles its run queue at random; each trial seeds that shuffle, so a
failure names a ``target``, ``N`` and ``seed`` that reproduce it::

    RUNYARD_CHAOS_ONLY="run-trio:17:0" pytest tests/chaos -k run_task

Scenarios check their invariants themselves and raise ``AssertionError``.
"""

from __future__ import annotations

import dataclasses
import os
import random
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path

import trio
from trio.lowlevel import Task

# A step count no scenario reaches: the guard against a scenario that loops.
MAX_STEPS = 5000
# Seconds a trial may last; past it the trial fails (a hang).
TRIAL_LIMIT = 30.0
# Seconds a run's cleanup may take in a trial: far above what it needs here.
CLEANUP_DEADLINE = 10.0


@dataclasses.dataclass
class Trial:
    """One run of a scenario, with the injection point and what happened."""

    target: str
    at: int | None  # the step to inject at; None counts only
    seed: int
    db_path: str
    steps: int = 0
    fired: bool = False
    # Set by the scenario: which tasks count, and what the injection cancels.
    is_target: Callable[[Task], bool] = lambda task: False
    inject: Callable[[], None] = lambda: None
    notes: dict[str, object] = dataclasses.field(default_factory=dict)

    @property
    def id(self) -> str:
        return f"{self.target}:{self.at}:{self.seed}"


class _StepCounter(trio.abc.Instrument):
    def __init__(self, trial: Trial) -> None:
        self.trial = trial

    def before_task_step(self, task: Task) -> None:
        trial = self.trial
        if not trial.is_target(task):
            return
        if trial.at is not None and trial.steps == trial.at and not trial.fired:
            trial.fired = True
            trial.inject()
        trial.steps += 1
        if trial.steps > MAX_STEPS:
            raise AssertionError(f"{trial.id}: the target took more than {MAX_STEPS} steps")


Scenario = Callable[[Trial], Awaitable[None]]


def run_trial(scenario: Scenario, target: str, at: int | None, seed: int) -> Trial:
    with tempfile.TemporaryDirectory() as tmp:
        trial = Trial(target, at, seed, str(Path(tmp) / "chaos.sqlite3"))

        async def main() -> None:
            with trio.fail_after(TRIAL_LIMIT):
                await scenario(trial)

        _seed_scheduler(seed)
        try:
            trio.run(main, instruments=[_StepCounter(trial)])
        except BaseException as exc:
            raise AssertionError(f"chaos trial {trial.id} failed: {exc!r}") from exc
        return trial


def explore(scenario: Scenario, target: str, seeds: list[int]) -> int:
    """Inject at every step of ``target`` for each seed; return the injections made."""
    only = os.environ.get("RUNYARD_CHAOS_ONLY")
    if only:
        name, only_at, only_seed = only.split(":")
        if name != target:
            return 0
        return int(run_trial(scenario, target, int(only_at), int(only_seed)).fired)
    injections = 0
    for seed in seeds:
        at = 0
        while run_trial(scenario, target, at, seed).fired:
            injections += 1
            at += 1
        # The target finished before step N: every one of its steps was hit.
    return injections


def _seed_scheduler(seed: int) -> None:
    # trio randomises the order of each batch of runnable tasks with this
    # generator (a private name: test-only, pinned by the trio version we test).
    from trio._core import _run

    rng = getattr(_run, "_r", None)
    if isinstance(rng, random.Random):
        rng.seed(seed)
