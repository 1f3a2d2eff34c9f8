"""Assistants: the registered agents, read-only, in LangGraph's assistant shape."""

from __future__ import annotations

from quart import Blueprint, Response, jsonify

from ..agents import Agent
from ..errors import NotFound
from . import schema
from .context import body, supervisor
from .openapi import Routes
from .render import assistant_json

assistants = Blueprint("assistants", __name__)
route = Routes(assistants)


@route("/assistants/search", "POST", summary="List the registered agents as assistants")
async def search() -> Response:
    b = schema.body_object(await body())
    limit, offset = schema.paging(b)
    graph_id = schema.field(b, "graph_id", str, None)
    names = [n for n in supervisor().agents.names() if graph_id in (None, n)]
    return jsonify([assistant_json(_agent(n)) for n in names[offset : offset + limit]])


@route("/assistants/<assistant_id>", "GET", summary="One registered agent")
async def get(assistant_id: str) -> Response:
    return jsonify(assistant_json(_agent(assistant_id)))


def _agent(name: str) -> Agent:
    agent = supervisor().agents.get(name)
    if agent is None:
        raise NotFound(f"assistant {name!r} not found")
    return agent
