"""The service itself: liveness, readiness, version and capabilities, this API, the dashboard.

The interactive page over this API is :mod:`.docs_page`.
"""

from __future__ import annotations

import trio
from quart import Blueprint, Response, current_app, jsonify

from .. import __version__
from ..errors import StoreError
from . import openapi, shapes
from .context import runyard, supervisor
from .routes import HTML, Json, Routes

meta = Blueprint("meta", __name__)
route = Routes(meta)

# What /info promises a client; LangGraph's SDK reads "flags".
FLAGS = {"assistants": True, "crons": True, "langsmith": False}
CAPABILITIES = ["threads", "runs", "stream", "wait", "join", "cancel", "resumable_streams"]
# Seconds the store's probe read may take before /ready says the store is not usable
# (a probe's own timeout is usually 1 s).
READY_STORE_TIMEOUT = 1.0


@route("/ok", "GET", summary="Liveness", answers={200: shapes.Ok}, stored=False)
async def ok() -> Response:
    return jsonify({"ok": True})


@route(
    "/ready",
    "GET",
    summary="Readiness: 503 while starting, draining or without a store",
    answers={200: shapes.Ready, 503: Json(shapes.Ready, "Not ready, and why")},
    stored=False,  # a store failure is an answer of its own here
)
async def ready() -> Response:
    """200 once recovery is done, while not draining and the store answers a read."""
    sup = supervisor()
    reason = None
    if sup.draining:
        reason = "draining"
    elif not sup.accepting:
        reason = "starting"  # recovery has not finished
    else:
        with trio.move_on_after(READY_STORE_TIMEOUT) as probe:
            try:
                await sup.last_seq("")  # an index lookup that finds nothing, in the store
            except StoreError:
                reason = "store"
        if probe.cancelled_caught:
            reason = "store"
    if reason is None:
        return jsonify({"ready": True})
    response = jsonify({"ready": False, "reason": reason})
    response.status_code = 503
    return response


@route(
    "/info",
    "GET",
    summary="Version, capabilities and durability mode",
    answers={200: shapes.Info},
    stored=False,
)
async def info() -> Response:
    state = runyard()
    return jsonify(
        {
            "name": "runyard",
            "version": __version__,
            "durability": state.settings.durability,
            "accepting_runs": state.supervisor.accepting,
            "flags": FLAGS,
            "capabilities": CAPABILITIES,
        }
    )


@route(
    "/openapi.json",
    "GET",
    summary="This API as an OpenAPI 3.1 document",
    answers={200: Json(dict[str, object], "The OpenAPI document")},
    stored=False,
)
async def openapi_json() -> Response:
    return jsonify(openapi.served(current_app, __version__))


@route("/", "GET", summary="The live dashboard", answers={200: HTML}, stored=False)
async def dashboard() -> Response:
    response = await current_app.send_static_file("index.html")
    response.headers["Cache-Control"] = "no-cache"
    return response
