"""A throw-away PostgreSQL server for the tests: one per session, a fresh database per test.

The server comes from the machine's packages (``initdb`` and ``pg_ctl`` of the
newest ``/usr/lib/postgresql/*/bin``, or ``RUNYARD_PG_BIN``); as root they
run as the ``postgres`` user. Its data directory and unix socket live in a
temporary directory, nothing listens on TCP, and durability is off (fsync):
the whole cluster is deleted at the end of the session.

Each test's database sorts text as ICU's ``en-US`` by default, as production
databases usually do, so a query that relies on code-point order without the
store's ``"C"`` collation fails here too.

On CI (``CI=true``) a missing server or psycopg fails the tests that need
it; elsewhere they are skipped, saying why. Use the fixtures by assigning
them in a test module (``postgres_server = pg.postgres_server``) or in
``conftest.py``; however many modules do, the session starts one server.
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pytest

try:
    import psycopg
except ImportError:  # the postgres extra is not installed
    HAVE_PSYCOPG = False
else:
    HAVE_PSYCOPG = True

ON_CI = os.environ.get("CI") == "true"
# Settings for a server whose data is thrown away: fast, and no TCP at all.
SETTINGS = {
    "listen_addresses": "''",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "200",
    "shared_buffers": "32MB",
}
# Seconds pg_ctl waits for the server to start or stop.
PG_CTL_WAIT = 60
SUPERUSER = "postgres"


def bin_dir() -> Path | None:
    """Where ``initdb`` and ``pg_ctl`` are: RUNYARD_PG_BIN, the newest packaged version, PATH."""
    if "RUNYARD_PG_BIN" in os.environ:
        return Path(os.environ["RUNYARD_PG_BIN"])
    packaged = glob.glob("/usr/lib/postgresql/*/bin/initdb")
    if packaged:
        newest = max(packaged, key=lambda p: int(Path(p).parts[-3]))
        return Path(newest).parent
    found = shutil.which("initdb")
    return None if found is None else Path(found).parent


def unavailable() -> str | None:
    """Why no server can be started here, or None."""
    if not HAVE_PSYCOPG:
        return "psycopg is not installed (pip install 'runyard[postgres]')"
    binaries = bin_dir()
    if binaries is None or not (binaries / "initdb").exists():
        return "no initdb found (/usr/lib/postgresql/*/bin, RUNYARD_PG_BIN or PATH)"
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        return "running as root without runuser to start the server as postgres"
    return None


def missing(reason: str, *, server: str = "PostgreSQL") -> NoReturn:
    """Fail on CI, where a server must be there; skip elsewhere."""
    if ON_CI:
        pytest.fail(f"{server} is required on CI: {reason}")
    pytest.skip(f"{server} is not available: {reason}")


# Where the throw-away clusters live: a folder every user may enter.
SYSTEM_TMP = "/tmp"


class PostgresServer:
    """One PostgreSQL cluster in a temporary directory, on a unix socket."""

    def __init__(self, binaries: Path) -> None:
        self._binaries = binaries
        # Not under TMPDIR (nox points it into the checkout, which the postgres user may
        # not be allowed to enter): the system's /tmp, which every user can.
        self._root = Path(tempfile.mkdtemp(prefix="runyard-pg-", dir=SYSTEM_TMP))
        self.data = self._root / "data"
        self.socket_dir = self._root
        self._log = self._root / "server.log"
        self._names = (f"test_{n}" for n in itertools.count())
        self._admin: psycopg.Connection[tuple[object, ...]] | None = None
        self._template = "template0"

    def start(self) -> None:
        if os.geteuid() == 0:
            shutil.chown(self._root, user=SUPERUSER)
        self._run(
            "initdb", "-D", str(self.data), "-U", SUPERUSER, "--auth=trust", "--encoding=UTF8",
            "--locale=C.UTF-8", "--no-sync", "--no-instructions",
        )  # fmt: skip
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write(f"unix_socket_directories = '{self.socket_dir}'\n")
            conf.writelines(f"{name} = {value}\n" for name, value in SETTINGS.items())
        self.resume()
        self._admin = psycopg.connect(self.url("postgres"), autocommit=True)
        self._template = self._make_template()

    def pause(self) -> None:
        """Shut the server down, keeping its data: to its clients, an outage
        (make the databases needed before: :meth:`new_database` needs it up)."""
        self._run(
            "pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "-t", str(PG_CTL_WAIT), "stop"
        )

    def resume(self) -> None:
        """Start the server (again), and its administration connection with it."""
        try:
            self._run(
                "pg_ctl", "-D", str(self.data), "-l", str(self._log), "-w",
                "-t", str(PG_CTL_WAIT), "start",
            )  # fmt: skip
        except subprocess.CalledProcessError as exc:
            log = self._log.read_text(errors="replace") if self._log.exists() else ""
            raise RuntimeError(f"PostgreSQL did not start:\n{log[-2000:]}") from exc
        if self._admin is not None:
            self._admin.close()
            self._admin = psycopg.connect(self.url("postgres"), autocommit=True)

    def stop(self) -> None:
        if self._admin is not None:
            self._admin.close()
        if (self.data / "postmaster.pid").exists():
            self._run(
                "pg_ctl", "-D", str(self.data), "-m", "immediate", "-w",
                "-t", str(PG_CTL_WAIT), "stop",
            )  # fmt: skip
        shutil.rmtree(self._root, ignore_errors=True)

    def url(self, database: str) -> str:
        return f"postgresql://{SUPERUSER}@/{database}?host={self.socket_dir}"

    def _make_template(self) -> str:
        """A template whose default collation is ICU's en-US (template0 if ICU is missing)."""
        assert self._admin is not None
        try:
            self._admin.execute(
                "CREATE DATABASE runyard_template TEMPLATE template0 LOCALE_PROVIDER icu"
                " ICU_LOCALE 'en-US' LOCALE 'C.UTF-8'"
            )
        except psycopg.Error:
            return "template0"
        return "runyard_template"

    def new_database(self) -> str:
        """Create an empty database; its URL."""
        assert self._admin is not None
        name = next(self._names)
        self._admin.execute(
            f'CREATE DATABASE "{name}" TEMPLATE "{self._template}" STRATEGY FILE_COPY'
        )
        return self.url(name)

    def drop_database(self, url: str) -> None:
        assert self._admin is not None
        name = url.rsplit("/", 1)[1].split("?")[0]
        self._admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def _run(self, program: str, *args: str) -> None:
        command = [str(self._binaries / program), *args]
        if os.geteuid() == 0:
            command = ["runuser", "-u", SUPERUSER, "--", *command]
        subprocess.run(command, check=True, capture_output=True, cwd=self._root)


# The session's server and how many session fixtures use it: one module or several
# (each assigns the fixture), one server all the same.
_shared: PostgresServer | None = None
_users = 0


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """The session's PostgreSQL server, started on first use."""
    global _shared, _users
    reason = unavailable()
    if reason is not None:
        missing(reason)
    if _shared is None:
        binaries = bin_dir()
        assert binaries is not None
        server = PostgresServer(binaries)
        try:
            server.start()
        except BaseException:
            server.stop()
            raise
        _shared = server
    _users += 1
    try:
        yield _shared
    finally:
        _users -= 1
        if _users == 0:
            _shared.stop()
            _shared = None


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """The URL of a fresh, empty database, dropped after the test."""
    url = postgres_server.new_database()
    yield url
    with contextlib.suppress(psycopg.Error):
        postgres_server.drop_database(url)
