"""A throw-away Redis server for the tests: a fresh one per test, on a unix socket.

The server is the machine's ``redis-server`` (``RUNYARD_REDIS_SERVER``, else
the one on ``PATH``, else ``/usr/bin/redis-server``). It listens on no TCP
port (``--port 0``), only on ``redis.sock`` in a temporary directory under
``/tmp`` (a unix socket's path must stay under 108 bytes, which nox's
``TMPDIR`` in the checkout may not), keeps nothing on disk, and is killed
and deleted after the test. Its :attr:`RedisServer.url` is
``unix:///tmp/runyard-redis-XXXX/redis.sock``, the form ``--bus`` and
coredis's ``Redis.from_url`` take (``?db=N`` may follow).

:meth:`RedisServer.stop` kills it as a crash would and :meth:`RedisServer.start`
brings it back on the same socket, empty: to its clients, an outage.

On CI (``CI=true``) a missing ``redis-server`` fails the tests that need
it; elsewhere they are skipped, saying why. Use the fixture by assigning it
in a test module (``redis_server = redis.redis_server``).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .pg import missing

# Where the server's directory goes: short, so the socket's path fits.
SYSTEM_TMP = "/tmp"
# Seconds a server has to answer PING after it was started.
START_WAIT = 10.0
# Settings for a server whose data is thrown away: no TCP, no snapshots, no append-only
# file; only this user may connect.
SETTINGS = ("--port", "0", "--save", "", "--appendonly", "no", "--unixsocketperm", "700")


def server_binary() -> str | None:
    """Where ``redis-server`` is: RUNYARD_REDIS_SERVER, PATH, /usr/bin."""
    if "RUNYARD_REDIS_SERVER" in os.environ:
        return os.environ["RUNYARD_REDIS_SERVER"]
    found = shutil.which("redis-server")
    if found is None and Path("/usr/bin/redis-server").exists():
        found = "/usr/bin/redis-server"
    return found


def unavailable() -> str | None:
    """Why no server can be started here, or None."""
    binary = server_binary()
    if binary is None or not Path(binary).exists():
        return "no redis-server found (RUNYARD_REDIS_SERVER, PATH or /usr/bin)"
    return None


class RedisServer:
    """One ``redis-server`` in a temporary directory, on a unix socket only."""

    def __init__(self, binary: str) -> None:
        self._binary = binary
        self._root = Path(tempfile.mkdtemp(prefix="runyard-redis-", dir=SYSTEM_TMP))
        self.socket = self._root / "redis.sock"
        self._log = self._root / "redis.log"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def start(self) -> None:
        """Start the server (again: an empty one, on the same socket); return once it answers."""
        assert self._process is None, "already running"
        where = ("--unixsocket", str(self.socket), "--dir", str(self._root))
        self._process = subprocess.Popen(
            [self._binary, *SETTINGS, *where, "--logfile", str(self._log)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + START_WAIT
        while not self._answers():
            if self._process.poll() is not None or time.monotonic() > deadline:
                log = self._log.read_text(errors="replace") if self._log.exists() else ""
                self.stop()
                raise RuntimeError(f"redis-server did not start:\n{log[-2000:]}")
            time.sleep(0.01)

    def stop(self) -> None:
        """Kill the server (SIGKILL, as a crash would): its clients' connections drop."""
        if self._process is not None:
            self._process.kill()
            self._process.wait()
            self._process = None

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self._root, ignore_errors=True)

    def _answers(self) -> bool:
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(1.0)
                sock.connect(str(self.socket))
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A running Redis of this test's own, killed and deleted after it."""
    reason = unavailable()
    if reason is not None:
        missing(reason, server="Redis")
    binary = server_binary()
    assert binary is not None
    server = RedisServer(binary)
    try:
        server.start()
        yield server
    finally:
        server.remove()
