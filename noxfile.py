"""Routine commands, one nox session each: ``nox -s tests lint typecheck``."""

from __future__ import annotations

import os
import shutil

import nox

nox.options.sessions = ["tests", "lint", "typecheck"]
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_missing_interpreters = False

PYTHON = "3.11"
SOURCES = ["src", "tests", "noxfile.py", "bench", "examples"]
# The JS SDK agent-chat-ui pins, for tests/test_chat_flow.py (package-lock.json).
JS_TESTS = "tests/js"
FLAKE8_ASYNC = ",".join(
    f"ASYNC{n}" for n in (100, 101, 102, 103, 104, 105, 106, 112, 113, 115, 116, 119, 120)
)


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """The test suite (what CI runs), against real servers on 127.0.0.1."""
    session.install("-e", ".[test,langgraph]")
    _install_js(session)
    session.run("pytest", *session.posargs)


def _install_js(session: nox.Session) -> None:
    """``npm ci`` for the JS SDK test: required on CI; elsewhere that test is skipped without it."""
    on_ci = os.environ.get("CI") == "true"
    if shutil.which("node") is None or shutil.which("npm") is None:
        if on_ci:
            session.error("node and npm are required on CI (tests/js, the JS SDK test)")
        session.warn("node/npm not found: the JS SDK test will be skipped")
        return
    try:
        session.run("npm", "ci", "--prefix", JS_TESTS, "--no-audit", "--no-fund", external=True)
    except nox.command.CommandFailed:
        if on_ci:
            raise
        session.warn("npm ci failed: the JS SDK test will be skipped unless tests/js is installed")


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """ruff, plus flake8-async for unshielded awaits in cleanup (ASYNC102 and friends)."""
    session.install("-e", ".[lint]")
    session.run("ruff", "check", *SOURCES)
    session.run("ruff", "format", "--check", *SOURCES)
    # The flake8-async rules ruff lacks that matter here: unshielded awaits in
    # cleanup (102, 120), swallowed cancellation (103, 104), bad nursery use.
    session.run("flake8", f"--select={FLAKE8_ASYNC}", "src")


@nox.session(python=PYTHON)
def typecheck(session: nox.Session) -> None:
    """mypy --strict over the package and the tests."""
    session.install("-e", ".[test,typecheck,langgraph]")
    session.run("mypy")


@nox.session(python=PYTHON)
def chaos(session: nox.Session) -> None:
    """The heavier cancellation-chaos tier (more seeds); CI runs the light one in `tests`."""
    session.install("-e", ".[test,langgraph]")
    # -s: the injection counts, per target and in total, are printed by the tests.
    session.run("pytest", "tests/chaos", "-q", "-s", env={"RUNYARD_CHAOS_TIER": "heavy"})


@nox.session(python=PYTHON)
def docs(session: nox.Session) -> None:
    """Build docs/ into build/site with MkDocs; any warning is an error."""
    session.install("mkdocs>=1.6")
    session.run("mkdocs", "build", "--strict")


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """The benchmarks (docs/benchmarks.md); `-- --peer langgraph` adds langgraph dev,
    `-- --peer aegra` aegra (own venv, bench/aegra.py), `-- --graphs` runs the graph part alone.
    `-- capacity [--steps 250,500 --duration 60 --peer ...]` runs the capacity workloads
    instead (bench/capacity.py: w9 token streams, cancel latency, w3 against the ceiling)."""
    session.install("-e", ".[test,langgraph]")
    if "langgraph" in session.posargs or "--peer" in session.posargs:
        session.install("langgraph-cli[inmem]")
    if "--profile" in session.posargs:
        session.install("py-spy")
    if session.posargs[:1] == ["capacity"]:
        session.install("matplotlib")
        session.run("python", "bench/capacity.py", *session.posargs[1:])
        return
    session.run("python", "bench/bench.py", *session.posargs)


@nox.session(python=PYTHON)
def soak(session: nox.Session) -> None:
    """w10, the churn soak (bench/soak.py): 30 minutes of mixed work, sampled each minute,
    plotted to docs/capacity-soak.png; `-- --minutes 5` for a shorter one. Not in CI."""
    session.install("-e", ".[test]", "matplotlib")
    session.run("python", "bench/soak.py", *session.posargs)
