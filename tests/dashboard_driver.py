"""Drives the dashboard in headless chromium; prints what it saw as one JSON line.

Run by tests/test_dashboard.py in a process of its own:
``python tests/dashboard_driver.py SCENARIO URL SCREENSHOT_DIR [ARGS_JSON]``,
where SCENARIO is ``runs``, ``interrupt`` or ``overview``.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from playwright.sync_api import Page, sync_playwright

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
# Milliseconds to wait for something the page shows within a second or two.
SHOWN = 15_000


def event_names(page: Page) -> list[str]:
    names: list[str] = page.eval_on_selector_all(
        "#events .ev", "nodes => nodes.map(n => n.textContent)"
    )
    return names


def event_data(page: Page, name: str) -> list[str]:
    """The data of each shown event called ``name``."""
    data: list[str] = page.eval_on_selector_all(
        "#events div",
        "(nodes, name) => nodes.filter(n => n.querySelector('.ev').textContent === name)"
        ".map(n => n.lastChild.textContent)",
        name,
    )
    return data


def runs(page: Page, shots: Path, args: dict[str, Any]) -> dict[str, Any]:
    """Start, follow (across a reload) and cancel demo runs from the page."""
    out: dict[str, Any] = {}
    # Start a demo run from the form; its events stream into the run view.
    page.select_option("select[name=agent]", "emitter")
    page.fill("input[name=input]", json.dumps({"n": 40, "delay": 0.05}))
    page.click("button[type=submit]")
    page.wait_for_selector("#events div[data-id='5']", timeout=SHOWN)
    # A reload resumes the same run from the URL and misses nothing.
    page.reload()
    page.wait_for_selector("#events div[data-id='0']", timeout=SHOWN)
    page.wait_for_selector("#runstatus.success", timeout=30_000)
    out["ids"] = page.eval_on_selector_all(
        "#events div", "nodes => nodes.map(n => Number(n.dataset.id))"
    )
    out["events"] = event_names(page)
    out["list_status"] = page.text_content("#runs tr.selected .status")
    # Start a long run and cancel it with the button.
    page.select_option("select[name=agent]", "sleepy")
    page.fill("input[name=input]", json.dumps({"delay": 600}))
    page.click("button[type=submit]")
    page.wait_for_selector("#runstatus.running", timeout=SHOWN)
    page.click("#cancel")
    page.wait_for_selector("#runstatus.interrupted", timeout=SHOWN)
    out["cancelled"] = page.text_content("#runstatus")
    out["rows"] = page.locator("#runs tr").count()
    page.screenshot(path=str(shots / "dashboard.png"), full_page=True)
    return out


def interrupt(page: Page, shots: Path, args: dict[str, Any]) -> dict[str, Any]:
    """Events named by an agent; a thread stopped at ``interrupt()``, answered from the page.

    ``args``: the ``run_id`` that left its thread interrupted.
    """
    out: dict[str, Any] = {}
    asked = args["run_id"]
    out["cancel_visible_before_selection"] = page.is_visible("#cancel")
    out["interrupt_visible_before_selection"] = page.is_visible("#interrupt")
    # An agent that names its own events, started from the form.
    page.select_option("select[name=agent]", "herald")
    page.fill("input[name=input]", "{}")
    page.click("#start button[type=submit]")
    page.wait_for_selector("#events .ev:text-is('end')", timeout=SHOWN)
    out["herald_events"] = event_names(page)
    out["cancel_visible_after_selection"] = page.is_visible("#cancel")
    # The interrupted thread's run: flagged in the list, its question shown.
    page.wait_for_selector(f"#runs tr[data-run='{asked}'] .badge", timeout=SHOWN)
    out["badge"] = page.text_content(f"#runs tr[data-run='{asked}'] .badge")
    page.click(f"#runs tr[data-run='{asked}']")
    page.wait_for_selector("#interrupt", state="visible", timeout=SHOWN)
    page.wait_for_selector("#events .ev:text-is('end')", timeout=SHOWN)
    out["asked_events"] = event_names(page)
    out["question"] = json.loads(page.text_content("#interruptvalue") or "null")
    out["thread_status"] = page.text_content("#threadstatus")
    # Not JSON: refused in the page, nothing sent.
    rows = page.locator("#runs tr").count()
    page.fill("#resumevalue", "yes")
    page.click("#resume button[type=submit]")
    page.wait_for_selector("#resumeproblem", state="visible", timeout=SHOWN)
    out["refusal"] = page.text_content("#resumeproblem")
    page.screenshot(path=str(shots / "dashboard-interrupt.png"), full_page=True)
    page.wait_for_timeout(300)  # room for a run the page should not have started
    out["rows_added_by_refusal"] = page.locator("#runs tr").count() - rows
    out["selected_after_refusal"] = page.text_content("#runid")
    # The answer, sent with Ctrl+Enter: a new run that streams like any other.
    page.fill("#resumevalue", '"yes"')
    page.press("#resumevalue", "Control+Enter")
    page.wait_for_function(
        "asked => document.getElementById('runid').textContent !== asked", arg=asked
    )
    out["resumed_run"] = page.text_content("#runid")
    page.wait_for_selector("#runstatus.success", timeout=30_000)
    page.wait_for_selector("#events .ev:text-is('end')", timeout=SHOWN)
    page.wait_for_selector("#threadstatus.idle", timeout=SHOWN)
    out["resumed_events"] = event_names(page)
    out["resumed_values"] = [json.loads(d) for d in event_data(page, "values")]
    out["interrupt_visible_after"] = page.is_visible("#interrupt")
    out["selected_row"] = page.get_attribute("#runs tr.selected", "data-run")
    page.wait_for_selector(f"#runs tr[data-run='{asked}']:not(:has(.badge))", timeout=SHOWN)
    out["badges_after"] = page.locator("#runs .badge").count()
    page.screenshot(path=str(shots / "dashboard-resumed.png"), full_page=True)
    return out


def status_counts(page: Page) -> dict[str, int]:
    """The runs-by-status chart as it reads: status -> the number by its bar."""
    counts: dict[str, int] = page.eval_on_selector_all(
        "#statuschart .row",
        "rows => Object.fromEntries(rows.map("
        "r => [r.dataset.status, Number(r.querySelector('.count').textContent)]))",
    )
    return counts


def details(page: Page) -> dict[str, str]:
    """The run details as shown: label -> text."""
    shown: dict[str, str] = page.eval_on_selector_all(
        "#details dt",
        "dts => Object.fromEntries(dts.map(dt => [dt.textContent, "
        "dt.nextElementSibling.textContent]))",
    )
    return shown


def listed(page: Page, table: str = "runs") -> list[str]:
    """The run ids of a table's rows, top to bottom."""
    ids: list[str] = page.eval_on_selector_all(
        f"#{table} tr", "rows => rows.map(r => r.dataset.run)"
    )
    return ids


def open_run(page: Page, run_id: str, table: str = "runs") -> dict[str, str]:
    """Click a run's row and wait for its details to be complete; return them."""
    page.click(f"#{table} tr[data-run='{run_id}']")
    page.wait_for_function(
        "id => document.getElementById('runid').textContent === id"
        " && !document.getElementById('details').hidden"
        " && document.getElementById('d-attempt').textContent !== '…'"
        " && !document.getElementById('d-output').textContent.startsWith('…')",
        arg=run_id,
        timeout=SHOWN,
    )
    return details(page)


def overview(page: Page, shots: Path, args: dict[str, Any]) -> dict[str, Any]:
    """The charts, a run's details, the filters and the thread view.

    ``args``: ``echo`` and ``failed``, two finished runs of the thread ``thread``
    (echo first), and ``cancelled``, a sleepy run cancelled by a user.
    """
    out: dict[str, Any] = {}
    page.wait_for_selector("#statuschart .row", timeout=SHOWN)
    out["counts_before"] = status_counts(page)
    # A run started from the page moves both charts while it streams.
    page.select_option("select[name=agent]", "emitter")
    page.fill("input[name=input]", json.dumps({"n": 200, "delay": 0.02}))
    page.click("#start button[type=submit]")
    page.wait_for_selector("#statuschart .row[data-status=running][data-count='1']", timeout=SHOWN)
    page.wait_for_function("Number(document.getElementById('eps').textContent) > 0", timeout=SHOWN)
    out["rate_shown"] = float(page.text_content("#eps") or "nan")
    page.wait_for_selector("#ratechart polyline.rate", timeout=SHOWN)
    out["rate_points"] = page.eval_on_selector(
        "#ratechart polyline.rate", "p => p.getAttribute('points').split(' ').length"
    )
    page.screenshot(path=str(shots / "dashboard-charts.png"), full_page=True)
    page.wait_for_selector("#runstatus.success", timeout=30_000)
    page.wait_for_selector("#statuschart .row[data-status=success][data-count='2']", timeout=SHOWN)
    out["counts_after"] = status_counts(page)
    out["emitter"] = page.text_content("#runid")
    page.wait_for_function(
        "!document.getElementById('d-output').textContent.startsWith('…')", timeout=SHOWN
    )
    out["emitter_details"] = details(page)
    # Details of each kind of ending, and the thread view of the two-run thread.
    out["echo_details"] = open_run(page, args["echo"])
    page.wait_for_function(
        "n => document.querySelectorAll('#threadruns tr').length === n", arg=2, timeout=SHOWN
    )
    out["thread_shown"] = page.text_content("#threadfull")
    out["thread_count"] = page.text_content("#threadcount")
    out["thread_runs"] = listed(page, "threadruns")
    out["failed_details"] = open_run(page, args["failed"], table="threadruns")
    out["thread_selected"] = page.get_attribute("#threadruns tr.selected", "data-run")
    page.screenshot(path=str(shots / "dashboard-details.png"), full_page=True)
    out["cancelled_details"] = open_run(page, args["cancelled"])
    out["cancelled_status"] = page.text_content("#runstatus")
    # Filters: by status, by agent (kept across a reload), and by a click on a bar.
    out["all_rows"] = listed(page)
    page.select_option("#filterstatus", "error")
    out["error_rows"] = listed(page)
    out["error_shown"] = page.text_content("#shown")
    page.select_option("#filterstatus", "timeout")
    out["timeout_rows"] = listed(page)
    out["timeout_empty"] = page.text_content("#noruns") if page.is_visible("#noruns") else None
    page.select_option("#filterstatus", "")
    page.select_option("#filteragent", "echo")
    out["echo_rows"] = listed(page)
    page.reload()
    page.wait_for_selector("#conn:text('live')", timeout=SHOWN)
    page.wait_for_selector("#runs tr", timeout=SHOWN)
    out["echo_rows_after_reload"] = listed(page)
    out["agent_filter_after_reload"] = page.input_value("#filteragent")
    page.select_option("#filteragent", "")
    page.wait_for_selector("#statuschart .row", timeout=SHOWN)
    page.click("#statuschart .row[data-status=interrupted]")
    out["bar_rows"] = listed(page)
    out["bar_filter"] = page.input_value("#filterstatus")
    page.screenshot(path=str(shots / "dashboard-filtered.png"), full_page=True)
    return out


SCENARIOS: dict[str, Callable[[Page, Path, dict[str, Any]], dict[str, Any]]] = {
    "runs": runs,
    "interrupt": interrupt,
    "overview": overview,
}


def drive(scenario: str, url: str, shots: Path, args: dict[str, Any]) -> dict[str, Any]:
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.goto(url)
        page.wait_for_selector("#conn:text('live')", timeout=SHOWN)
        out = SCENARIOS[scenario](page, shots, args)
        browser.close()
    return out


if __name__ == "__main__":
    extra = json.loads(sys.argv[4]) if len(sys.argv) > 4 else {}
    print(json.dumps(drive(sys.argv[1], sys.argv[2], Path(sys.argv[3]), extra)))
