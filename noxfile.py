"""Routine commands, one nox session each: ``nox -s tests lint typecheck``."""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import tomllib
from pathlib import Path

import nox
from packaging.requirements import Requirement
from packaging.version import Version

ON_CI = os.environ.get("CI") == "true"

# What CI runs (``./scripts/test`` with no arguments): the suite on every Python, on the
# lowest declared versions, and the checks.
nox.options.sessions = ["tests", "tests_lowest", "lint", "typecheck"]
# ... as many at once as there are cores (those that allow_parallel; bench and the others
# run alone), each one's output printed whole when it ends. One a core: the suite is
# CPU-bound, and three test sessions on 2 cores made tests with timeouts miss them.
# ./scripts/test runs the coverage session alone first: its chaos storm needs both.
nox.options.parallel = os.cpu_count() or 1
nox.options.reuse_existing_virtualenvs = True
# uv makes and fills the environments in seconds (scripts/_venv.sh installs it beside nox);
# without it, virtualenv and pip do. Compiled at install as pip does, so a test's first
# server start does not compile its imports.
nox.options.default_venv_backend = "uv|virtualenv"
os.environ.setdefault("UV_COMPILE_BYTECODE", "1")
# A missing Python fails CI; elsewhere its sessions are skipped with a message.
nox.options.error_on_missing_interpreters = ON_CI
# Interpreters come from this machine (PATH or pyenv), never from a download.
nox.options.download_python = "never"

PYTHON = "3.11"  # the oldest that requires-python allows: lint, typecheck, lower bounds
PYTHONS = ["3.11", "3.13"]
# Coverage is measured on the newest: 3.11's ast.parse can fail when two threads parse at
# once (CPython gh-106905, "AST constructor recursion depth mismatch"; Hypothesis parses
# lambdas), and coverage's tracer, slowing every thread, made it happen in a full run.
COVERAGE_PYTHON = "3.13"
SOURCES = ["src", "tests", "noxfile.py", "bench", "examples"]
# What the test suite needs installed: every optional part it tests.
TEST_EXTRAS = "test,langgraph,postgres,redis"
# The JS SDK agent-chat-ui pins, for tests/test_chat_flow.py (package-lock.json).
JS_TESTS = "tests/js"
FLAKE8_ASYNC = ",".join(
    f"ASYNC{n}" for n in (100, 101, 102, 103, 104, 105, 106, 112, 113, 115, 116, 119, 120)
)


def _pyenv_pythons() -> None:
    """Let nox find the pyenv Pythons that pyenv's shims hide.

    A shim runs only the versions ``pyenv global`` (or ``.python-version``)
    names: with 3.11 active, ``python3.13`` fails, and nox's discovery skips
    it. Each wanted version's own ``bin`` (the newest patch release, not a
    free-threaded build) goes at the end of ``PATH``, so ``PATH``'s own
    interpreters still win.
    """
    versions = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv") / "versions"
    path = os.environ.get("PATH", "").split(os.pathsep)
    for python in PYTHONS:
        release = re.compile(re.escape(python) + r"\.\d+")
        found = [d for d in versions.glob(f"{python}.*") if release.fullmatch(d.name)]
        if found:
            newest = max(found, key=lambda d: Version(d.name))
            if str(newest / "bin") not in path:
                path.append(str(newest / "bin"))
    os.environ["PATH"] = os.pathsep.join(path)


_pyenv_pythons()


@nox.session(python=PYTHONS, allow_parallel=True)
def tests(session: nox.Session) -> None:
    """The test suite, against real servers on 127.0.0.1, on each supported Python.

    On :data:`COVERAGE_PYTHON` a full run (no pytest arguments) also measures
    coverage and fails under the floor in pyproject.toml
    (``[tool.coverage.report] fail_under``).
    """
    session.install("-e", f".[{TEST_EXTRAS}]")
    _install_js(session)
    coverage: list[str] = []
    if session.python == COVERAGE_PYTHON and not session.posargs:
        coverage = ["--cov", "--cov-report=term:skip-covered"]
    env = {"COVERAGE_FILE": str(Path(session.create_tmp()) / ".coverage")}
    session.run("pytest", *coverage, *session.posargs, env=env)


@nox.session(python=PYTHON, allow_parallel=True)
def tests_lowest(session: nox.Session) -> None:
    """The test suite with runyard's dependencies at the lower bounds pyproject.toml declares.

    Each floor must be a version runyard works with. The extras resolve as
    usual: the langgraph extra's floors cannot be installed with the test
    tools (langgraph-sdk 0.4.14 needs langchain-core 1.4).
    """
    pins = _lower_bounds()
    session.log("lower bounds: " + " ".join(pins))
    constraints = Path(session.create_tmp()) / "lowest.txt"
    constraints.write_text("\n".join(pins) + "\n")
    session.install("-e", f".[{TEST_EXTRAS}]", "-c", str(constraints))
    _install_js(session)
    session.run("pytest", *session.posargs)


def _lower_bounds() -> list[str]:
    """``name==floor`` for each of ``[project] dependencies``; one without a floor is an error."""
    pins = []
    for line in tomllib.loads(Path("pyproject.toml").read_text())["project"]["dependencies"]:
        req = Requirement(line)
        floors = [Version(s.version) for s in req.specifier if s.operator in (">=", "~=", "==")]
        if not floors:
            raise ValueError(f"pyproject.toml: {req.name} declares no lower bound")
        pins.append(f"{req.name}=={max(floors)}")
    return pins


def _install_js(session: nox.Session) -> None:
    """``npm ci`` for the JS SDK test: required on CI; elsewhere that test is skipped without it.

    Once for all test sessions, which ``./scripts/test`` runs at the same time:
    one at a time (a lock on ``package-lock.json``), and not again while
    ``node_modules`` holds what that lock file names (a stamp in it; ``npm ci``
    deletes ``node_modules`` first, the stamp with it).
    """
    if shutil.which("node") is None or shutil.which("npm") is None:
        if ON_CI:
            session.error("node and npm are required on CI (tests/js, the JS SDK test)")
        session.warn("node/npm not found: the JS SDK test will be skipped")
        return
    lock_file = Path(JS_TESTS) / "package-lock.json"
    stamp = Path(JS_TESTS) / "node_modules" / ".runyard-installed"
    with lock_file.open("rb") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        wanted = hashlib.sha256(lock.read()).hexdigest()
        if stamp.exists() and stamp.read_text() == wanted:
            session.log(f"{JS_TESTS}/node_modules is up to date")
            return
        try:
            session.run("npm", "ci", "--prefix", JS_TESTS, "--no-audit", "--no-fund", external=True)
        except nox.command.CommandFailed:
            if ON_CI:
                raise
            session.warn(
                "npm ci failed: the JS SDK test will be skipped unless tests/js is installed"
            )
            return
        stamp.write_text(wanted)


@nox.session(python=PYTHON, allow_parallel=True)
def lint(session: nox.Session) -> None:
    """ruff, plus flake8-async for unshielded awaits in cleanup (ASYNC102 and friends)."""
    session.install("-e", ".[lint]")
    session.run("ruff", "check", *SOURCES)
    session.run("ruff", "format", "--check", *SOURCES)
    # The flake8-async rules ruff lacks that matter here: unshielded awaits in
    # cleanup (102, 120), swallowed cancellation (103, 104), bad nursery use.
    session.run("flake8", f"--select={FLAKE8_ASYNC}", "src")


@nox.session(python=PYTHON, allow_parallel=True)
def typecheck(session: nox.Session) -> None:
    """mypy --strict over the package and the tests."""
    session.install("-e", f".[{TEST_EXTRAS},typecheck]")
    session.run("mypy")


@nox.session(python=PYTHON)
def chaos(session: nox.Session) -> None:
    """The heavier cancellation-chaos tier (more seeds); CI runs the light one in `tests`."""
    session.install("-e", f".[{TEST_EXTRAS}]")
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
    instead (bench/capacity.py: w9 token streams, cancel latency, w3 and w1 against the
    ceiling, the stack's floor; `--profile` adds a flame graph of w1). `-- postgres` runs
    workloads 1-4 on a throw-away PostgreSQL against SQLite (bench/on_postgres.py); `-- replicas`
    three replicas against one, and takeovers after kill -9 (bench/replicas.py)."""
    session.install("-e", ".[test,langgraph]")
    if "langgraph" in session.posargs or "--peer" in session.posargs:
        session.install("langgraph-cli[inmem]")
    if "--profile" in session.posargs:
        session.install("py-spy")
    if session.posargs[:1] == ["postgres"]:
        session.install("-e", ".[postgres]")
        session.run("python", "bench/on_postgres.py", *session.posargs[1:])
        return
    if session.posargs[:1] == ["replicas"]:
        session.install("-e", ".[postgres,redis]")
        session.run("python", "bench/replicas.py", *session.posargs[1:])
        return
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
