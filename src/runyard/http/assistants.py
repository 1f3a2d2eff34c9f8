"""Assistants: the registered agents and the configurations clients made of them.

A registered agent's name works as an ``assistant_id`` on every route; such a
*system* assistant cannot be changed or deleted (409). The rest follows
LangGraph's server: ``PATCH`` makes a new version, ``/versions`` lists them
newest first, ``/latest`` picks the one runs use, and ``/graph``, ``/schemas``
and ``/subgraphs`` describe the graph behind an assistant.
"""

from __future__ import annotations

from quart import Blueprint, Response, jsonify

from ..errors import BadRequest, Conflict, NotFound
from ..model import JSON
from . import shapes
from .bodies import (
    AssistantCount,
    AssistantCreate,
    AssistantFields,
    AssistantLatest,
    AssistantPatch,
    AssistantSearch,
    AssistantVersions,
    GraphQuery,
    SubgraphsQuery,
)
from .context import owner, supervisor
from .render import assistant_json, assistant_version_json
from .routes import NO_BODY, Json, Routes

assistants = Blueprint("assistants", __name__)
route = Routes(assistants)

# 409: a registered agent's assistant cannot be changed or deleted.
SYSTEM = (Conflict,)


@route(
    "/assistants",
    "POST",
    summary="Create an assistant from a registered graph",
    body=AssistantCreate,
    answers={200: shapes.Assistant},
    # 404: no such graph; 409: the id is taken; 400: both context and config.configurable.
    raises=(NotFound, Conflict, BadRequest),
)
async def create(body: AssistantCreate) -> Response:
    made = await supervisor().assistants.create(
        body.graph_id,
        assistant_id=body.assistant_id,
        if_exists=body.if_exists,
        owner=owner(),
        **_fields(body),
    )
    return jsonify(assistant_json(made))


@route(
    "/assistants/search",
    "POST",
    summary="Search assistants by graph, name and metadata",
    body=AssistantSearch,
    answers={200: list[shapes.SelectedAssistant]},
    raises=(NotFound,),  # a graph_id that names no graph
)
async def search(body: AssistantSearch) -> Response:
    found, more = await supervisor().assistants.search(
        graph_id=body.graph_id,
        name=body.name,
        metadata=body.metadata,
        sort_by=body.sort_by,
        descending=body.sort_order == "desc",
        limit=body.limit,
        offset=body.offset,
        owner=owner(),
    )
    select = tuple(body.select)
    response = jsonify([assistant_json(a, select) for a in found])
    # LangGraph's pagination headers: the next offset, and a total that counts one past it.
    end = body.offset + len(found)
    response.headers["X-Pagination-Total"] = str(end + 1 if more else end)
    if more:
        response.headers["X-Pagination-Next"] = str(end)
    return response


@route(
    "/assistants/count",
    "POST",
    summary="Count assistants by graph, name and metadata",
    body=AssistantCount,
    answers={200: Json(int, "How many assistants match")},
    raises=(NotFound,),  # a graph_id that names no graph
)
async def count(body: AssistantCount) -> Response:
    total = await supervisor().assistants.count(
        graph_id=body.graph_id, name=body.name, metadata=body.metadata, owner=owner()
    )
    return jsonify(total)


@route(
    "/assistants/<assistant_id>",
    "GET",
    summary="Read an assistant (a graph's name works)",
    answers={200: shapes.Assistant},
)
async def get(assistant_id: str) -> Response:
    return jsonify(assistant_json(await supervisor().assistants.get(assistant_id, owner=owner())))


@route(
    "/assistants/<assistant_id>",
    "PATCH",
    summary="Change an assistant: a new version",
    body=AssistantPatch,
    answers={200: shapes.Assistant},
    raises=(*SYSTEM, BadRequest),
)
async def update(assistant_id: str, body: AssistantPatch) -> Response:
    changed = await supervisor().assistants.update(
        assistant_id, graph_id=body.graph_id, owner=owner(), **_fields(body)
    )
    return jsonify(assistant_json(changed))


@route(
    "/assistants/<assistant_id>",
    "DELETE",
    summary="Delete an assistant and its versions",
    answers={204: NO_BODY},
    raises=SYSTEM,
)
async def delete(assistant_id: str) -> Response:
    await supervisor().assistants.delete(assistant_id, owner=owner())
    return Response(b"", status=204)


@route(
    "/assistants/<assistant_id>/versions",
    "POST",
    summary="An assistant's versions, newest first",
    body=AssistantVersions,
    answers={200: list[shapes.AssistantVersion]},
)
async def versions(assistant_id: str, body: AssistantVersions) -> Response:
    found = await supervisor().assistants.versions(
        assistant_id,
        metadata=body.metadata,
        limit=body.limit,
        offset=body.offset,
        owner=owner(),
    )
    return jsonify([assistant_version_json(v) for v in found])


@route(
    "/assistants/<assistant_id>/latest",
    "POST",
    summary="Choose the version runs use",
    body=AssistantLatest,
    answers={200: shapes.Assistant},
    raises=SYSTEM,
)
async def latest(assistant_id: str, body: AssistantLatest) -> Response:
    chosen = await supervisor().assistants.set_latest(assistant_id, body.version, owner=owner())
    return jsonify(assistant_json(chosen))


@route(
    "/assistants/<assistant_id>/graph",
    "GET",
    summary="The assistant's graph, drawable",
    query=GraphQuery,
    answers={200: shapes.Drawing},
)
async def graph(assistant_id: str, query: GraphQuery) -> Response:
    drawn = await supervisor().assistants.drawing(assistant_id, xray=query.depth(), owner=owner())
    return jsonify(drawn)


@route(
    "/assistants/<assistant_id>/schemas",
    "GET",
    summary="The JSON schemas of the graph",
    answers={200: shapes.GraphSchemas},
)
async def schemas(assistant_id: str) -> Response:
    return jsonify(await supervisor().assistants.schemas(assistant_id, owner=owner()))


SUBGRAPHS = {200: Json(dict[str, shapes.GraphSchemas], "The subgraphs' schemas by namespace")}


@route(
    "/assistants/<assistant_id>/subgraphs",
    "GET",
    summary="The schemas of the subgraphs",
    query=SubgraphsQuery,
    answers=SUBGRAPHS,
)
@route(
    "/assistants/<assistant_id>/subgraphs/<namespace>",
    "GET",
    summary="The schemas of one subgraph",
    query=SubgraphsQuery,
    answers=SUBGRAPHS,
)
async def subgraphs(
    assistant_id: str, query: SubgraphsQuery, namespace: str | None = None
) -> Response:
    found = await supervisor().assistants.subgraphs(
        assistant_id, namespace=namespace, recurse=query.recurse, owner=owner()
    )
    return jsonify(found)


def _fields(body: AssistantFields) -> dict[str, JSON]:
    """The fields that create and update share; each None when absent."""
    return {
        "config": body.config,
        "context": body.context,
        "metadata": body.metadata,
        "name": body.name,
        "description": body.description,
    }
