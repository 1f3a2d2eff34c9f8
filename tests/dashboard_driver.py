"""Drives the dashboard in headless chromium; prints what it saw as one JSON line.

Run by tests/test_dashboard.py in a process of its own:
``python tests/dashboard_driver.py URL SCREENSHOT_DIR``.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from playwright.sync_api import sync_playwright

CHROMIUM = os.environ.get("RUNYARD_CHROMIUM", "/usr/bin/chromium")
# The flags a root, offline, headless chromium needs here.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def drive(url: str, shots: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page()
        page.goto(url)
        page.wait_for_selector("#conn:text('live')", timeout=15_000)
        # Start a demo run from the form; its events stream into the run view.
        page.select_option("select[name=agent]", "emitter")
        page.fill("input[name=input]", json.dumps({"n": 40, "delay": 0.05}))
        page.click("button[type=submit]")
        page.wait_for_selector("#events div[data-id='5']", timeout=15_000)
        # A reload resumes the same run from the URL and misses nothing.
        page.reload()
        page.wait_for_selector("#events div[data-id='0']", timeout=15_000)
        page.wait_for_selector("#runstatus.success", timeout=30_000)
        out["ids"] = page.eval_on_selector_all(
            "#events div", "nodes => nodes.map(n => Number(n.dataset.id))"
        )
        out["events"] = page.eval_on_selector_all(
            "#events .ev", "nodes => nodes.map(n => n.textContent)"
        )
        out["list_status"] = page.text_content("#runs tr.selected .status")
        # Start a long run and cancel it with the button.
        page.select_option("select[name=agent]", "sleepy")
        page.fill("input[name=input]", json.dumps({"delay": 600}))
        page.click("button[type=submit]")
        page.wait_for_selector("#runstatus.running", timeout=15_000)
        page.click("#cancel")
        page.wait_for_selector("#runstatus.interrupted", timeout=15_000)
        out["cancelled"] = page.text_content("#runstatus")
        out["rows"] = page.locator("#runs tr").count()
        page.screenshot(path=str(shots / "dashboard.png"), full_page=True)
        browser.close()
    return out


if __name__ == "__main__":
    print(json.dumps(drive(sys.argv[1], Path(sys.argv[2]))))
