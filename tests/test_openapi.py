"""/openapi.json tells the truth: every route, parameter, status and answer the server has.

The fuzzing against the document is tests/test_fuzz.py (schemathesis, every check);
these tests cover what a fuzzer cannot reach: the routes that wait for a run, the
renderers against the shapes the document publishes, the validation messages, the
interactive page, and the document of a server with tokens.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from quart import Quart
from quart_trio import QuartTrio
from swagger_ui_bundle import swagger_ui_path  # type: ignore[import-untyped]

from runyard.config import Settings
from runyard.errors import StoreError
from runyard.http import errors, openapi, shapes
from runyard.http.app import create_app
from runyard.http.items import item_json
from runyard.http.render import (
    assistant_json,
    assistant_version_json,
    run_json,
    thread_json,
    thread_state_json,
)
from runyard.model import Assistant, CancelReason, ErrorInfo, Item, Run, RunStatus, Thread
from runyard.server import Server, serve
from runyard.supervisor import Supervisor

from .helpers import read_stream

# Served, and rightly left out of the document: files, not API.
INTERNAL_ENDPOINTS = ("static", "docs.asset")


def _template(rule: str) -> str:
    return re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule)


async def _doc(client: httpx.AsyncClient) -> dict[str, Any]:
    found: dict[str, Any] = (await client.get("/openapi.json")).json()
    return found


def _documented(
    doc: dict[str, Any], method: str, template: str, response: httpx.Response
) -> dict[str, Any]:
    """The documented answer ``response`` is, after checking its status and media type."""
    answers = doc["paths"][template][method.lower()]["responses"]
    assert str(response.status_code) in answers, (method, template, response.status_code)
    answer: dict[str, Any] = answers[str(response.status_code)]
    media = response.headers.get("content-type", "").split(";")[0]
    if "content" in answer:
        assert media in answer["content"], (method, template, media)
    else:
        assert response.content == b"", (method, template)
    return answer


async def test_every_route_the_app_serves_is_documented_and_nothing_else(
    supervisor: Supervisor,
) -> None:
    app = create_app(supervisor, Settings())
    doc = openapi.document(app, "test")
    served = {
        (_template(rule.rule), method.lower())
        for rule in app.url_map.iter_rules()
        if rule.endpoint not in INTERNAL_ENDPOINTS
        for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}
    }
    documented = {(path, method) for path, ops in doc["paths"].items() for method in ops}
    assert served == documented


async def test_the_statuses_of_the_contract_are_in_the_document(client: httpx.AsyncClient) -> None:
    paths = (await _doc(client))["paths"]

    def statuses(path: str, method: str) -> set[str]:
        return set(paths[path][method]["responses"])

    assert {"200", "400", "404", "409", "413", "422", "429", "503"} <= statuses(
        "/threads/{thread_id}/runs", "post"
    )
    assert {"200", "202"} <= statuses("/threads/{thread_id}/runs/{run_id}/cancel", "post")
    assert {"204", "409"} <= statuses("/threads/{thread_id}/runs/{run_id}", "delete")
    assert {"200", "204", "400"} <= statuses("/threads/{thread_id}/runs/{run_id}/stream", "get")
    assert {"200", "503"} <= statuses("/ready", "get")
    assert "401" not in statuses("/threads", "post")  # no tokens on this server
    retry = paths["/runs"]["post"]["responses"]["429"]["headers"]
    assert set(retry) == {"Retry-After"}


async def test_query_parameters_and_bodies_come_from_the_validating_models(
    client: httpx.AsyncClient,
) -> None:
    doc = await _doc(client)
    listing = doc["paths"]["/threads/{thread_id}/runs"]["get"]["parameters"]
    limit = next(p for p in listing if p["name"] == "limit")
    assert (limit["schema"]["minimum"], limit["schema"]["maximum"]) == (1, 1000)
    assert limit["schema"]["default"] == 10
    body = doc["components"]["schemas"]["RunCreate"]
    assert body["required"] == ["assistant_id"]
    assert body["properties"]["multitask_strategy"]["default"] == "enqueue"
    assert {"after_seconds", "command", "checkpoint", "stream_mode"} <= set(body["properties"])
    # Null is the same as absent for an optional field, so the document allows it.
    assert {"type": "null"} in body["properties"]["metadata"]["anyOf"]
    run = doc["paths"]["/runs"]["post"]
    assert run["requestBody"]["required"] is True
    assert doc["paths"]["/threads/search"]["post"]["requestBody"]["required"] is False


async def test_the_routes_that_wait_answer_as_documented(client: httpx.AsyncClient) -> None:
    doc = await _doc(client)
    waited = await client.post("/runs/wait", json={"assistant_id": "echo", "input": {"x": 1}})
    _documented(doc, "POST", "/runs/wait", waited)
    assert waited.json() == {"x": 1}
    run_path = waited.headers["content-location"]
    tid, rid = run_path.split("/")[2], run_path.split("/")[4]
    joined = await client.get(f"/threads/{tid}/runs/{rid}/join")
    _documented(doc, "GET", "/threads/{thread_id}/runs/{run_id}/join", joined)
    _documented(doc, "GET", "/runs/{run_id}/join", await client.get(f"/runs/{rid}/join"))

    body = {"assistant_id": "echo", "input": {"y": 2}}
    async with client.stream("POST", f"/threads/{tid}/runs/stream", json=body) as streamed:
        _documented(doc, "POST", "/threads/{thread_id}/runs/stream", streamed)
        frames = await read_stream(streamed)
    last = frames[-1].id
    async with client.stream("GET", f"/runs/{rid}/stream") as joined_stream:
        _documented(doc, "GET", "/runs/{run_id}/stream", joined_stream)
        await read_stream(joined_stream)
    stream_id = streamed.headers["content-location"].rsplit("/", 1)[-1]
    at_end = await client.get(
        f"/threads/{tid}/runs/{stream_id}/stream", headers={"Last-Event-ID": str(last)}
    )
    _documented(doc, "GET", "/threads/{thread_id}/runs/{run_id}/stream", at_end)
    assert at_end.status_code == 204
    bad_id = await client.get(f"/runs/{rid}/stream", headers={"Last-Event-ID": "seven"})
    _documented(doc, "GET", "/runs/{run_id}/stream", bad_id)
    assert bad_id.status_code == 400
    bad_mode = await client.get(f"/runs/{rid}/stream?stream_mode=loud")
    _documented(doc, "GET", "/runs/{run_id}/stream", bad_mode)
    assert "stream_mode" in bad_mode.json()["detail"]

    with trio.move_on_after(10):
        async with client.stream("GET", "/runs/feed?limit=5") as feed:
            _documented(doc, "GET", "/runs/feed", feed)
            async for line in feed.aiter_lines():
                if line.startswith("data:"):
                    break  # the snapshot came; the feed itself never ends


async def test_the_renderers_produce_the_shapes_the_document_publishes() -> None:
    error = ErrorInfo("AgentError", "it broke")
    run = Run(
        "r1", "t1", "echo", RunStatus.INTERRUPTED, 1.5, 2.5,
        metadata={"a": 1}, cancel_reason=CancelReason.USER, error=error,
    )  # fmt: skip
    shapes.Run.model_validate(run_json(run))
    thread = Thread("t1", 1.0, 2.0, metadata={"k": "v"}, values={"out": 1})
    shapes.Thread.model_validate(thread_json(thread))
    shapes.ThreadState.model_validate(thread_state_json(thread))
    made = Assistant("a1", "echo", 1.0, 2.0, name="echo", config={"c": 1})
    shapes.Assistant.model_validate(assistant_json(made))
    shapes.AssistantVersion.model_validate(assistant_version_json(made))
    shapes.SelectedAssistant.model_validate(assistant_json(made, ("name", "version")))
    shapes.Item.model_validate(item_json(Item(("a", "b"), "k", {"v": 1}, 1.0, 2.0)))


@pytest.mark.parametrize(
    ("path", "body", "detail"),
    [
        ("/threads", b"[1]", "the request body must be a JSON object"),
        ("/threads", b'{"thread_id": "has space"}', "field 'thread_id' must match"),
        ("/runs", b"{}", "field 'assistant_id' is required"),
        ("/runs", b'{"assistant_id": null}', "field 'assistant_id' is required"),
        ("/runs", b'{"assistant_id": "echo", "after_seconds": "5"}', "must be a number"),
        (
            "/runs",
            b'{"assistant_id": "echo", "stream_mode": ["values", "loud"]}',
            "field 'stream_mode.1' must be",
        ),
        ("/runs", b'{"assistant_id": "echo", "interrupt_before": 5}', "must be '*' or a list"),
        ("/threads/search", b'{"limit": "10"}', "field 'limit' must be an integer"),
        ("/threads/search", b'{"offset": -1}', "field 'offset' must be greater than"),
    ],
)
async def test_a_refused_body_gets_a_422_naming_the_field(
    client: httpx.AsyncClient, path: str, body: bytes, detail: str
) -> None:
    response = await client.post(path, content=body)
    assert response.status_code == 422, response.text
    assert detail in response.json()["detail"]


async def test_nested_fields_are_named_by_their_path(client: httpx.AsyncClient) -> None:
    thread = (await client.post("/threads", json={})).json()
    body = {"assistant_id": "echo", "command": {"goto": {"input": 1}}}
    response = await client.post(f"/threads/{thread['thread_id']}/runs", json=body)
    assert response.status_code == 422
    assert response.json()["detail"] == "field 'command.goto.node' is required"


async def test_integers_are_json_schema_integers_and_query_text_is_parsed(
    client: httpx.AsyncClient,
) -> None:
    assert (await client.post("/threads/search", json={"limit": 10.0})).status_code == 200
    assert (await client.post("/threads/search", json={"limit": None})).status_code == 200
    thread = (await client.post("/threads", json={})).json()["thread_id"]
    assert (await client.get(f"/threads/{thread}/runs?limit=5")).status_code == 200
    refused = await client.get(f"/threads/{thread}/runs?limit=5.5")
    assert refused.json()["detail"] == "query parameter 'limit' must be an integer"
    run = (await client.post("/runs", json={"assistant_id": "echo"})).json()
    cancel = f"/threads/{run['thread_id']}/runs/{run['run_id']}/cancel"
    assert (await client.post(f"{cancel}?wait=1")).status_code == 200  # what the SDK sends
    assert (await client.post(f"{cancel}?wait=maybe")).status_code == 422


async def test_a_wrong_method_is_a_405_with_allow(client: httpx.AsyncClient) -> None:
    response = await client.put("/threads/search")
    assert response.status_code == 405
    assert "POST" in response.headers["allow"]
    assert response.json() == {"detail": "method not allowed"}


async def test_the_interactive_page_is_swagger_ui_from_the_installed_package(
    client: httpx.AsyncClient,
) -> None:
    page = await client.get("/docs")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "swagger-ui-bundle.js" in page.text
    assert "http" not in page.text  # every file from this server: no CDN
    script = await client.get("/docs/swagger-ui-bundle.js")
    assert script.status_code == 200
    assert script.content == (Path(swagger_ui_path) / "swagger-ui-bundle.js").read_bytes()
    start = await client.get("/docs/runyard.js")
    assert "openapi.json" in start.text
    assert (await client.get("/docs/index.html")).status_code == 404  # only what the page uses


async def test_with_tokens_the_document_says_where_one_is_needed(
    settings: Settings, nursery: trio.Nursery
) -> None:
    settings.tokens = {"alice": "alice-token-0123456789"}
    server: Server = await nursery.start(serve, settings)
    headers = {"Authorization": "Bearer alice-token-0123456789"}
    async with httpx.AsyncClient(base_url=server.url, headers=headers) as c:
        doc = await _doc(c)
    assert doc["security"] == [{"bearer": []}, {"apiKey": []}]
    assert "401" in doc["paths"]["/threads"]["post"]["responses"]
    assert doc["paths"]["/ok"]["get"]["security"] == []
    assert "401" not in doc["paths"]["/ok"]["get"]["responses"]
    server.request_stop()
    await server.stopped.wait()


async def test_a_store_failure_is_a_503_that_quotes_nothing_of_the_database() -> None:
    app: Quart = QuartTrio("store-failure")
    errors.install(app)

    @app.route("/boom")
    async def boom() -> str:
        raise StoreError("database write failed: disk I/O error at /srv/secret.db")

    response = await app.test_client().get("/boom")
    assert response.status_code == 503
    assert await response.get_json() == {"detail": errors.STORE_DETAIL}
    assert response.headers["Retry-After"] == str(errors.RETRY_AFTER_SECONDS)
