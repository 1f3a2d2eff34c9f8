"""The dashboard in a real headless browser (Debian's chromium, driven by Playwright).

Skipped, with the reason, where chromium or playwright is missing;
``./scripts/test`` installs both on CI.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import trio

from runyard.server import Server

CHROMIUM = os.environ.get("RUNYARD_CHROMIUM", "/usr/bin/chromium")

pytestmark = [
    pytest.mark.trio,
    pytest.mark.skipif(
        shutil.which(CHROMIUM) is None,
        reason=f"no chromium at {CHROMIUM} (apt-get install chromium)",
    ),
]


def _drive(url: str, shots: Path) -> dict[str, Any]:
    """Drive the browser in a process of its own: trio-asyncio's event loop
    policy in this one would capture Playwright's asyncio loop."""
    done = subprocess.run(
        [sys.executable, str(Path(__file__).with_name("dashboard_driver.py")), url, str(shots)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


async def test_the_dashboard_starts_follows_resumes_and_cancels_runs(
    server: Server, tmp_path: Path
) -> None:
    pytest.importorskip("playwright", reason="playwright is not installed")
    out = await trio.to_thread.run_sync(_drive, server.url, tmp_path)
    assert out["ids"] == list(range(43)), "every event once, in order, after the reload"
    assert out["events"][0] == "metadata"
    assert out["events"][-1] == "end"
    assert out["list_status"] == "success", "the list updated live"
    assert out["cancelled"] == "interrupted (user)"
    assert out["rows"] == 2
