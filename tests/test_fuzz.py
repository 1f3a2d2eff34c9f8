"""Hypothesis-generated bodies for run creation and search: 4xx or success, never a 5xx."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runyard.config import Settings

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
