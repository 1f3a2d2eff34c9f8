"""A real ``runyard serve`` subprocess on 127.0.0.1, for lifecycle tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import trio


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class ServerProcess:
    """Start, signal and wait for a ``runyard serve`` process; its output goes to a file."""

    def __init__(self, db: str, port: int, log_dir: Path, **env: str) -> None:
        self.db = db
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = log_dir / f"server-{port}-{time.monotonic_ns()}.log"
        self.env = {**os.environ, **env}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = self.log_path.open("wb")
        cmd = [sys.executable, "-m", "runyard.cli", "serve"]
        cmd += ["--host", "127.0.0.1", "--port", str(self.port), "--db", self.db]
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=self.env)
        log.close()

    async def wait_ready(self, limit: float = 20) -> None:
        with trio.fail_after(limit):
            async with httpx.AsyncClient(base_url=self.url) as c:
                while True:
                    assert self.proc is not None
                    if self.proc.poll() is not None:
                        raise AssertionError(f"server exited early:\n{self.output()}")
                    try:
                        if (await c.get("/ok")).status_code == 200:
                            return
                    except httpx.TransportError:
                        pass
                    await trio.sleep(0.05)

    def signal(self, signum: signal.Signals) -> None:
        assert self.proc is not None
        self.proc.send_signal(signum)

    async def wait_exit(self, limit: float = 60) -> int:
        assert self.proc is not None
        proc = self.proc
        with trio.fail_after(limit):
            return await trio.to_thread.run_sync(proc.wait, abandon_on_cancel=True)

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def ensure_stopped(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
