"""The service itself: liveness, version and capabilities, this API, the dashboard."""

from __future__ import annotations

from quart import Blueprint, Response, current_app, jsonify

from .. import __version__
from . import openapi
from .context import runyard
from .openapi import Routes

meta = Blueprint("meta", __name__)
route = Routes(meta)

# What /info promises a client; LangGraph's SDK reads "flags".
FLAGS = {"assistants": True, "crons": False, "langsmith": False}
CAPABILITIES = ["threads", "runs", "stream", "wait", "join", "cancel", "resumable_streams"]


@route("/ok", "GET", summary="Liveness")
async def ok() -> Response:
    return jsonify({"ok": True})


@route("/info", "GET", summary="Version, capabilities and durability mode")
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


@route("/openapi.json", "GET", summary="This API as an OpenAPI 3.1 document")
async def openapi_json() -> Response:
    return jsonify(openapi.document(current_app, __version__))


@route("/", "GET", summary="The live dashboard (HTML)")
async def dashboard() -> Response:
    response = await current_app.send_static_file("index.html")
    response.headers["Cache-Control"] = "no-cache"
    return response
