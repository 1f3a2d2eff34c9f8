"""aegra, the graph benchmarks' second peer: its own venv and a throw-away PostgreSQL.

aegra (``aegra-api`` on PyPI) is a FastAPI server for LangGraph graphs that
keeps threads, runs and checkpoints in PostgreSQL. The bench installs it into
``.nox/bench-aegra`` (newest releases need Python >= 3.12, so it picks the
newest interpreter it finds), starts PostgreSQL 15 from
``/usr/lib/postgresql/15/bin`` listening on a unix socket only, in a temporary
folder (as the ``postgres`` user through ``runuser`` when run as root), and
serves ``bench/graphs/langgraph.json`` with ``python -m aegra_api.main``
(uvicorn, one process). Redis is off: aegra's single-instance mode.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".nox" / "bench-aegra"
PG_BIN = Path("/usr/lib/postgresql/15/bin")
PG_WAIT = 60  # seconds pg_ctl may take to start or stop the server
PG_USER = "postgres"


def _python() -> str:
    """The newest CPython >= 3.12 on this machine (pyenv's too), else this one."""
    found = [shutil.which(f"python3.{minor}") for minor in (14, 13, 12)]
    pyenv = os.environ.get("PYENV_ROOT", str(Path.home() / ".pyenv"))
    found += sorted(glob.glob(f"{pyenv}/versions/3.1[2-9]*/bin/python"), reverse=True)
    for candidate in found:
        if candidate is None:
            continue
        # A pyenv shim for a version that is not active answers with an error.
        probe = subprocess.run(
            [candidate, "-c", "import sys; print(sys.version_info >= (3, 12))"],
            capture_output=True,
            text=True,
            check=False,
        )
        if probe.returncode == 0 and probe.stdout.strip() == "True":
            return candidate
    return sys.executable


def install() -> str:
    """Create the venv and install aegra-api once; return aegra's version."""
    python = VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([_python(), "-m", "venv", str(VENV)], check=True)
    probe = [str(python), "-c", "import importlib.metadata as m; print(m.version('aegra-api'))"]
    found = subprocess.run(probe, capture_output=True, text=True, check=False)
    if found.returncode != 0:
        pip = [str(python), "-m", "pip", "install", "-q", "aegra-api"]
        done = subprocess.run(pip, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"pip install aegra-api failed:\n{done.stderr}")
        found = subprocess.run(probe, capture_output=True, text=True, check=True)
    return found.stdout.strip()


def _as_postgres(cmd: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: run its tools as ``postgres`` then."""
    return ["runuser", "-u", PG_USER, "--", *cmd] if os.geteuid() == 0 else cmd


@contextmanager
def postgres() -> Iterator[str]:
    """A fresh PostgreSQL 15 with an ``aegra`` database; yields its socket folder.

    Listens on no TCP address at all. Stopped (``-m fast``) and deleted on exit.
    """
    if not (PG_BIN / "postgres").exists():
        raise RuntimeError(f"aegra needs PostgreSQL 15 in {PG_BIN} (apt-get install postgresql-15)")
    folder = tempfile.mkdtemp(prefix="runyard-bench-pg-")
    if os.geteuid() == 0:
        shutil.chown(folder, PG_USER)
    data = f"{folder}/data"
    init = [str(PG_BIN / "initdb"), "-D", data, "-U", PG_USER, "-A", "trust", "-E", "UTF8"]
    subprocess.run(_as_postgres([*init, "--no-sync"]), check=True, capture_output=True)
    options = f"-c listen_addresses='' -k {folder}"
    ctl = [str(PG_BIN / "pg_ctl"), "-D", data, "-t", str(PG_WAIT), "-w"]
    subprocess.run(
        _as_postgres([*ctl, "-l", f"{folder}/log", "-o", options, "start"]),
        check=True,
        capture_output=True,
    )
    try:
        subprocess.run(
            _as_postgres([str(PG_BIN / "createdb"), "-h", folder, "-U", PG_USER, "aegra"]),
            check=True,
            capture_output=True,
        )
        yield folder
    finally:
        subprocess.run(_as_postgres([*ctl, "-m", "fast", "stop"]), check=False, capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)


def postmaster_pid(socket_folder: str) -> int:
    """The PostgreSQL server's process id (its backends are its children)."""
    return int(Path(f"{socket_folder}/data/postmaster.pid").read_text().split()[0])


def command(port: int, socket_folder: str, config: Path) -> tuple[list[str], dict[str, str]]:
    """aegra's command line and environment, serving ``config`` on 127.0.0.1:``port``."""
    env = {
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "DATABASE_URL": f"postgresql://{PG_USER}@/aegra?host={socket_folder}",
        "AEGRA_CONFIG": str(config),
        "LOG_LEVEL": "WARNING",  # as runyard's bench server
        "REDIS_BROKER_ENABLED": "false",
        "CRON_ENABLED": "false",
        "OTEL_TARGETS": "",
    }
    return [str(VENV / "bin" / "python"), "-m", "aegra_api.main"], env
