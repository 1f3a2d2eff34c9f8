"""The API from outside: schemathesis against the server's own /openapi.json, with
every check; Hypothesis-generated bodies for run creation and search: never a 5xx."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runyard.config import Settings
from runyard.server import Server, serve

from .helpers import ThreadedServer

LEAKS = ("SECRET", "hunter2", "Traceback", "Exception", "Error(")
PATHS = ["/runs", "/runs/wait", "/threads", "/threads/search", "/assistants/search"]


@pytest.fixture(scope="module")
def http(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    db = tmp_path_factory.mktemp("fuzz") / "fuzz.sqlite3"
    running = ThreadedServer(Settings(host="127.0.0.1", port=0, db=str(db), grace=0.5))
    try:
        with httpx.Client(base_url=running.url, timeout=30) as client:
            yield client
    finally:
        running.close()


def _bodies() -> st.SearchStrategy[Any]:
    scalars = (
        st.none()
        | st.booleans()
        | st.integers()
        | st.floats(allow_nan=False)
        | st.text(max_size=20)
    )
    values = st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
        max_leaves=10,
    )
    keys = st.sampled_from(
        ["assistant_id", "input", "metadata", "config", "stream_mode", "multitask_strategy",
         "after_seconds", "timeout_seconds", "if_not_exists", "on_disconnect", "status",
         "limit", "offset", "thread_id", "if_exists", "context", "graph_id"]
    )  # fmt: skip
    named = st.sampled_from(["echo", "values", "custom", "enqueue", "reject", "create"])
    return st.dictionaries(keys, values | named, max_size=6) | values


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=_bodies(), path=st.sampled_from(PATHS))
def test_generated_bodies_never_cause_a_5xx(http: httpx.Client, body: Any, path: str) -> None:
    if isinstance(body, dict):
        body.pop("after_seconds", None)  # keep generated runs from piling up
    response = http.post(path, content=json.dumps(body))
    assert response.status_code < 500, response.text
    for leak in LEAKS:
        assert leak not in response.text
    assert http.get("/ok").status_code == 200


@given(raw=st.binary(max_size=200))
@settings(max_examples=100, deadline=None)
def test_arbitrary_bytes_are_a_clear_400_or_422(http: httpx.Client, raw: bytes) -> None:
    response = http.post("/runs", content=raw)
    assert response.status_code in (400, 404, 422), response.text
    assert "detail" in response.json()


def test_threaded_server_helper_is_loopback_only(tmp_path: Path) -> None:
    running = ThreadedServer(Settings(host="127.0.0.1", port=0, db=str(tmp_path / "t.db")))
    try:
        assert running.url.startswith("http://127.0.0.1:")
    finally:
        running.close()


# Requests the document calls valid that the server still refuses, each for a rule JSON
# Schema does not state: a state of the server, or a relation between two fields.
SCHEMATHESIS_CONFIG = """
# A command resumes a thread: on a thread-less route it is a 400 (test_run_options.py).
[[operations]]
include-name = ["POST /runs", "POST /runs/stream", "POST /runs/wait"]
checks.positive_data_acceptance.expected-statuses = ["2XX", "400", "404", "409", "429"]

# A cron's schedule must also be a valid cron expression, and its time zone one of the
# IANA database (runyard.crons): a 422 if not.
[[operations]]
include-name = ["POST /threads/{thread_id}/runs/crons", "PATCH /runs/crons/{cron_id}"]
checks.positive_data_acceptance.expected-statuses = ["2XX", "404", "409", "422"]

[[operations]]
include-name = "POST /runs/crons"
checks.positive_data_acceptance.expected-statuses = ["2XX", "400", "404", "409", "422"]

# Updating the state of a thread no graph ran on is a 400.
[[operations]]
include-name = "POST /threads/{thread_id}/state"
checks.positive_data_acceptance.expected-statuses = ["2XX", "400", "404", "409"]

# An assistant's context and its config.configurable may not both be given: a 400.
[[operations]]
include-name = ["POST /assistants", "PATCH /assistants/{assistant_id}"]
checks.positive_data_acceptance.expected-statuses = ["2XX", "400", "404", "409"]
"""
# Nothing a fuzzed run does may leave this machine: a webhook address the server would
# take is sent as one on loopback's discard port instead (the server allows 127.0.0.1).
SCHEMATHESIS_HOOKS = """
import schemathesis
from pydantic import TypeAdapter, ValidationError

from runyard.http.bodies import WebhookUrl

TAKEN = TypeAdapter(WebhookUrl)
LOOPBACK = "http://127.0.0.1:9/hook"


@schemathesis.hook
def before_call(ctx, case, **kwargs):
    body = case.body
    if isinstance(body, dict) and isinstance(body.get("webhook"), str):
        try:
            TAKEN.validate_python(body["webhook"])
        except ValidationError:
            return  # refused before any delivery: left as generated
        body["webhook"] = LOOPBACK
"""
# Where two routes share a path (GET /threads/search is GET /threads/{thread_id} for a
# thread named "search"), OPTIONS rightly lists the methods of both: schemathesis's
# allow_header_conformance, which knows one route per path, is left out there alone.
SHARED_PATHS = r"/(count|search|checkpoint|crons|stream|wait|feed)$"
# A valid request to these waits for its run, which a fuzzer can only see as a timeout;
# tests/test_openapi.py checks each of their answers against the document instead.
LONG_POLLS = r"/(wait|stream|join|feed)$"


@pytest.mark.slow
async def test_the_server_answers_as_its_openapi_document_says(
    settings: Settings, nursery: trio.Nursery, tmp_path: Path
) -> None:
    """schemathesis with all its checks: statuses, content types, headers and response
    schemas as documented, schema-valid requests accepted, schema-violating ones refused."""
    cli = Path(sys.executable).with_name("schemathesis")
    if not cli.exists():
        pytest.skip("schemathesis is not installed")
    settings.webhook_allowed_hosts = ["127.0.0.1"]
    server: Server = await nursery.start(serve, settings)
    config = tmp_path / "schemathesis.toml"
    config.write_text(SCHEMATHESIS_CONFIG)
    hooks = tmp_path / "hooks.py"
    hooks.write_text(SCHEMATHESIS_HOOKS)
    # One worker: Hypothesis parses lambdas' source with ast.parse, which on Python 3.11
    # can fail from two threads at once ("AST constructor recursion depth mismatch").
    common = [
        str(cli), "--config-file", str(config), "--no-color", "run", f"{server.url}/openapi.json",
        "--max-examples", "20", "--phases", "examples,coverage,fuzzing",
        "--request-timeout", "10", "--workers", "1", "--seed", "7",
    ]  # fmt: skip
    runs = [
        [*common, "--checks", "all", "--exclude-path-regex", f"{LONG_POLLS}|{SHARED_PATHS}"],
        [
            *common, "--checks", "all", "--exclude-checks", "allow_header_conformance",
            "--include-path-regex", SHARED_PATHS, "--exclude-path-regex", LONG_POLLS,
        ],
    ]  # fmt: skip
    failed = []
    for cmd in runs:
        run = functools.partial(
            subprocess.run,
            cmd,
            capture_output=True,
            text=True,
            timeout=600,
            env={**os.environ, "SCHEMATHESIS_HOOKS": str(hooks)},
        )
        done = await trio.to_thread.run_sync(run)
        if done.returncode != 0:
            failed.append(done.stdout.partition("=== WARNINGS ===")[0][-6000:])
    assert not failed, "\n".join(failed)
    async with httpx.AsyncClient(base_url=server.url) as c:
        assert (await c.get("/ok")).status_code == 200
    server.request_stop()
    await server.stopped.wait()
