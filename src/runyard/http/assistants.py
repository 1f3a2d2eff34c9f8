"""Assistants: the registered agents and the configurations clients made of them.

A registered agent's name works as an ``assistant_id`` on every route; such a
*system* assistant cannot be changed or deleted (409). The rest follows
LangGraph's server: ``PATCH`` makes a new version, ``/versions`` lists them
newest first, ``/latest`` picks the one runs use, and ``/graph``, ``/schemas``
and ``/subgraphs`` describe the graph behind an assistant.
"""

from __future__ import annotations

from quart import Blueprint, Response, jsonify, request

from ..assistants import SORTABLE
from ..errors import Invalid
from ..model import JSON
from . import schema
from .context import body, owner, settings, supervisor
from .openapi import Routes
from .render import ASSISTANT_FIELDS, assistant_json, assistant_version_json

assistants = Blueprint("assistants", __name__)
route = Routes(assistants)

SORT_ORDERS = ("asc", "desc")


@route("/assistants", "POST", summary="Create an assistant from a registered graph")
async def create() -> Response:
    b = schema.body_object(await body())
    graph_id = schema.field(b, "graph_id", str, "")
    if not graph_id:
        raise Invalid("field 'graph_id' is required")
    made = await supervisor().assistants.create(
        graph_id,
        assistant_id=schema.field(b, "assistant_id", str, None),
        if_exists=schema.choice(b, "if_exists", schema.IF_EXISTS, "raise"),
        owner=owner(),
        **_fields(b),
    )
    return jsonify(assistant_json(made))


@route("/assistants/search", "POST", summary="Search assistants by graph, name and metadata")
async def search() -> Response:
    b = schema.body_object(await body())
    limit, offset = schema.paging(b)
    found, more = await supervisor().assistants.search(
        graph_id=schema.field(b, "graph_id", str, None),
        name=schema.field(b, "name", str, ""),
        metadata=schema.field(b, "metadata", dict, {}),
        sort_by=schema.choice(b, "sort_by", SORTABLE, "created_at"),
        descending=schema.choice(b, "sort_order", SORT_ORDERS, "desc") == "desc",
        limit=limit,
        offset=offset,
        owner=owner(),
    )
    select = _select(b)
    response = jsonify([assistant_json(a, select) for a in found])
    # LangGraph's pagination headers: the next offset, and a total that counts one past it.
    end = offset + len(found)
    response.headers["X-Pagination-Total"] = str(end + 1 if more else end)
    if more:
        response.headers["X-Pagination-Next"] = str(end)
    return response


@route("/assistants/count", "POST", summary="Count assistants by graph, name and metadata")
async def count() -> Response:
    b = schema.body_object(await body())
    total = await supervisor().assistants.count(
        graph_id=schema.field(b, "graph_id", str, None),
        name=schema.field(b, "name", str, ""),
        metadata=schema.field(b, "metadata", dict, {}),
        owner=owner(),
    )
    return jsonify(total)


@route("/assistants/<assistant_id>", "GET", summary="Read an assistant (a graph's name works)")
async def get(assistant_id: str) -> Response:
    return jsonify(assistant_json(await supervisor().assistants.get(assistant_id, owner=owner())))


@route("/assistants/<assistant_id>", "PATCH", summary="Change an assistant: a new version")
async def update(assistant_id: str) -> Response:
    b = schema.body_object(await body())
    changed = await supervisor().assistants.update(
        assistant_id, graph_id=schema.field(b, "graph_id", str, None), owner=owner(), **_fields(b)
    )
    return jsonify(assistant_json(changed))


@route("/assistants/<assistant_id>", "DELETE", summary="Delete an assistant and its versions")
async def delete(assistant_id: str) -> Response:
    await supervisor().assistants.delete(assistant_id, owner=owner())
    return Response(b"", status=204)


@route(
    "/assistants/<assistant_id>/versions", "POST", summary="An assistant's versions, newest first"
)
async def versions(assistant_id: str) -> Response:
    b = schema.body_object(await body())
    limit, offset = schema.paging(b)
    found = await supervisor().assistants.versions(
        assistant_id,
        metadata=schema.field(b, "metadata", dict, {}),
        limit=limit,
        offset=offset,
        owner=owner(),
    )
    return jsonify([assistant_version_json(v) for v in found])


@route("/assistants/<assistant_id>/latest", "POST", summary="Choose the version runs use")
async def latest(assistant_id: str) -> Response:
    b = schema.body_object(await body())
    version = schema.field(b, "version", int, 0)
    if version < 1:
        raise Invalid("field 'version' must be an integer >= 1")
    chosen = await supervisor().assistants.set_latest(assistant_id, version, owner=owner())
    return jsonify(assistant_json(chosen))


@route("/assistants/<assistant_id>/graph", "GET", summary="The assistant's graph, drawable")
async def graph(assistant_id: str) -> Response:
    xray = _xray(request.args.get("xray"))
    return jsonify(await supervisor().assistants.drawing(assistant_id, xray=xray, owner=owner()))


@route("/assistants/<assistant_id>/schemas", "GET", summary="The JSON schemas of the graph")
async def schemas(assistant_id: str) -> Response:
    return jsonify(await supervisor().assistants.schemas(assistant_id, owner=owner()))


@route("/assistants/<assistant_id>/subgraphs", "GET", summary="The schemas of the subgraphs")
@route(
    "/assistants/<assistant_id>/subgraphs/<namespace>",
    "GET",
    summary="The schemas of one subgraph",
)
async def subgraphs(assistant_id: str, namespace: str | None = None) -> Response:
    found = await supervisor().assistants.subgraphs(
        assistant_id,
        namespace=namespace,
        recurse=schema.flag(request.args.get("recurse"), "recurse"),
        owner=owner(),
    )
    return jsonify(found)


def _fields(b: dict[str, JSON]) -> dict[str, JSON]:
    """The fields that create and update share; each None when absent."""
    return {
        "config": schema.field(b, "config", dict, None),
        "context": schema.field(b, "context", dict, None),
        "metadata": schema.metadata(b, settings().max_metadata_bytes) if "metadata" in b else None,
        "name": schema.field(b, "name", str, None),
        "description": schema.field(b, "description", str, None),
    }


def _select(b: dict[str, JSON]) -> tuple[str, ...]:
    chosen = schema.field(b, "select", list, [])
    if not all(isinstance(f, str) and f in ASSISTANT_FIELDS for f in chosen):
        raise Invalid(f"field 'select' may name only {', '.join(ASSISTANT_FIELDS)}")
    return tuple(chosen)


def _xray(value: str | None) -> bool | int:
    """``xray``: true, false, or how many levels of subgraphs to draw (1 or more)."""
    if value is None or value in ("", "false", "False"):
        return False
    if value in ("true", "True"):
        return True
    try:
        depth = int(value)
    except ValueError:
        depth = 0
    if depth < 1:
        raise Invalid("query parameter 'xray' must be true, false or a depth >= 1")
    return depth
