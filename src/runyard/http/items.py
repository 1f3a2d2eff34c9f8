"""The memory store over HTTP: items under namespaces, as LangGraph's ``/store`` routes.

Every item belongs to the caller (:func:`~.context.owner`); another owner's
items are never read, listed or touched. The models of :mod:`.bodies` check
namespaces, keys, values and ``ttl`` as the store does (the store checks them
again, for graphs, and a filter's operators); a bad one is a 422 naming the field.

As on LangGraph's server: a put or a delete answers 204; reading a missing
item answers 200 with ``null``; a search lists items newest first and, with
no vector index, ignores ``query`` (each item's ``score`` is null).
"""

from __future__ import annotations

from quart import Blueprint, Response, jsonify

from ..model import JSON, Item
from . import shapes
from .bodies import ItemDelete, ItemGet, ItemPut, ItemSearch, NamespaceSearch
from .context import owner, supervisor
from .render import iso
from .routes import NO_BODY, Json, Routes

items = Blueprint("items", __name__)
route = Routes(items)


@route(
    "/store/items",
    "PUT",
    summary="Store or replace an item",
    body=ItemPut,
    answers={204: NO_BODY},
)
async def put(body: ItemPut) -> Response:
    await supervisor().items.put_item(
        owner(), tuple(body.namespace), body.key, body.value, ttl=body.ttl
    )
    return Response(b"", status=204)


@route(
    "/store/items",
    "GET",
    summary="Read an item (null when there is none)",
    query=ItemGet,
    answers={200: Json(shapes.Item | None, "The item, or null")},
)
async def get(query: ItemGet) -> Response:
    # LangGraph's SDK sends one parameter of labels joined by periods; a label has none.
    namespace = tuple(label for joined in query.namespace for label in joined.split("."))
    # refresh_ttl is checked, then ignored: an item's ttl runs from its last put.
    item = await supervisor().items.get_item(owner(), namespace, query.key)
    return jsonify(None if item is None else item_json(item))


@route(
    "/store/items",
    "DELETE",
    summary="Delete an item",
    body=ItemDelete,
    answers={204: NO_BODY},
)
async def delete(body: ItemDelete) -> Response:
    await supervisor().items.delete_item(owner(), tuple(body.namespace), body.key)
    return Response(b"", status=204)


@route(
    "/store/items/search",
    "POST",
    summary="Search items under a namespace prefix",
    body=ItemSearch,
    answers={200: shapes.Items},
)
async def search(body: ItemSearch) -> Response:
    # No vector index: query is checked, then ignored; items come by last update.
    found = await supervisor().items.search_items(
        owner(),
        tuple(body.namespace_prefix),
        filter=body.filter,
        limit=body.limit,
        offset=body.offset,
    )
    return jsonify({"items": [{**item_json(i), "score": None} for i in found]})


@route(
    "/store/namespaces",
    "POST",
    summary="List the namespaces that hold items",
    body=NamespaceSearch,
    answers={200: shapes.Namespaces},
)
async def namespaces(body: NamespaceSearch) -> Response:
    found = await supervisor().items.list_namespaces(
        owner(),
        prefix=None if body.prefix is None else tuple(body.prefix),
        suffix=None if body.suffix is None else tuple(body.suffix),
        max_depth=body.max_depth,
        limit=body.limit,
        offset=body.offset,
    )
    return jsonify({"namespaces": [list(n) for n in found]})


def item_json(item: Item) -> dict[str, JSON]:
    return {
        "namespace": list(item.namespace),
        "key": item.key,
        "value": item.value,
        "created_at": iso(item.created_at),
        "updated_at": iso(item.updated_at),
    }
