"""What the README and examples/ promise, run for real."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import httpx
import pytest
import trio

from runyard.config import load
from runyard.server import Server, serve

from .helpers import parse_frames

pytestmark = pytest.mark.trio

ROOT = Path(__file__).resolve().parent.parent


def tour_script() -> str:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## A 30-second tour", 1)[1]
    match = re.search(r"```sh\n(.*?)```", section, re.S)
    assert match, "the README has a tour"
    return match.group(1)


async def test_the_readme_tour_runs_as_written(server: Server) -> None:
    script = "set -euo pipefail\n" + tour_script()
    done = await trio.to_thread.run_sync(
        lambda: subprocess.run(
            ["bash", "-c", script],
            env={"R": server.url, "PATH": "/usr/bin:/bin"},
            capture_output=True,
            text=True,
            timeout=60,
        )
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    frames = parse_frames(out)[0]
    cut = [f.event for f in frames].index("end") + 1
    first, second = frames[:cut], frames[cut:]
    assert [f.event for f in first].count("custom") == 5
    assert [f.id for f in second] == [4, 5, 6, 7, 8, 9, 10], "resumed right after id 3"
    assert '{"hello":"runyard"}' in out
    assert '"status":"interrupted"' in out
    assert '"cancel_reason":"user"' in out


async def test_the_example_agents_run(
    tmp_path: Path, nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT / "examples")
    settings = load("runyard.toml", env={}, overrides={"port": 0, "db": str(tmp_path / "x.db")})
    server: Server = await nursery.start(serve, settings)
    async with httpx.AsyncClient(base_url=server.url) as c:
        counted = await c.post("/runs/wait", json={"assistant_id": "counter", "input": {"n": 2}})
        talked = await c.post(
            "/runs/wait", json={"assistant_id": "talker", "input": {"text": "a b"}}
        )
        refused = await c.post("/runs/wait", json={"assistant_id": "counter", "input": {"n": -1}})
    assert counted.json() == {"count": 2}
    assert talked.json() == {"text": "a b"}
    assert refused.json()["__error__"]["message"] == "input field 'n' must be a whole number"
    server.request_stop()
    await server.stopped.wait()
