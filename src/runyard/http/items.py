"""The memory store over HTTP: items under namespaces, as LangGraph's ``/store`` routes.

Every item belongs to the caller (:func:`~.context.owner`); another owner's
items are never read, listed or touched. The store checks namespaces, keys,
values, ``ttl`` and filters and refuses bad ones with a 422 naming the field.

As on LangGraph's server: a put or a delete answers 204; reading a missing
item answers 200 with ``null``; a search lists items newest first and, with
no vector index, ignores ``query`` (each item's ``score`` is null).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeGuard

from quart import Blueprint, Response, jsonify, request

from ..errors import BadRequest, Invalid
from ..model import JSON, Item
from . import schema
from .context import body, owner, supervisor
from .openapi import Routes
from .render import iso

items = Blueprint("items", __name__)
route = Routes(items)

# A namespace listing's page, as LangGraph's SDK asks by default.
NAMESPACES_LIMIT = 100


@route("/store/items", "PUT", summary="Store or replace an item")
async def put() -> Response:
    b = schema.body_object(await body())
    index = b.get("index")
    if not (index in (None, False) or _strings(index)):
        raise Invalid("field 'index' must be false, null or a list of strings")
    await supervisor().items.put_item(
        owner(),
        _namespace(b, "namespace"),
        schema.field(b, "key", str, ""),
        _value(b),
        ttl=schema.field(b, "ttl", (int, float), None),
    )
    return Response(b"", status=204)


@route("/store/items", "GET", summary="Read an item (null when there is none)")
async def get() -> Response:
    labels = request.args.getlist("namespace")
    # LangGraph's SDK sends one parameter of labels joined by periods.
    namespace = tuple(labels[0].split(".")) if len(labels) == 1 else tuple(labels)
    key = request.args.get("key", "")
    if not key:
        raise BadRequest("query parameter 'key' is required")
    # Checked, then ignored: an item's ttl runs from its last put, reads do not restart it.
    schema.flag(request.args.get("refresh_ttl"), "refresh_ttl")
    item = await supervisor().items.get_item(owner(), namespace, key)
    return jsonify(None if item is None else item_json(item))


@route("/store/items", "DELETE", summary="Delete an item")
async def delete() -> Response:
    b = schema.body_object(await body())
    key = schema.field(b, "key", str, "")
    await supervisor().items.delete_item(owner(), _namespace(b, "namespace"), key)
    return Response(b"", status=204)


@route("/store/items/search", "POST", summary="Search items under a namespace prefix")
async def search() -> Response:
    b = schema.body_object(await body())
    limit, offset = schema.paging(b)
    schema.field(b, "query", str, None)  # no vector index: listed by last update instead
    schema.field(b, "refresh_ttl", bool, None)
    found = await supervisor().items.search_items(
        owner(),
        _optional_namespace(b, "namespace_prefix") or (),
        filter=schema.field(b, "filter", dict, None),
        limit=limit,
        offset=offset,
    )
    return jsonify({"items": [{**item_json(i), "score": None} for i in found]})


@route("/store/namespaces", "POST", summary="List the namespaces that hold items")
async def namespaces() -> Response:
    b = schema.body_object(await body())
    limit, offset = schema.paging(b, default_limit=NAMESPACES_LIMIT)
    found = await supervisor().items.list_namespaces(
        owner(),
        prefix=_optional_namespace(b, "prefix"),
        suffix=_optional_namespace(b, "suffix"),
        max_depth=schema.field(b, "max_depth", int, None),
        limit=limit,
        offset=offset,
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


def _namespace(b: Mapping[str, JSON], name: str) -> tuple[str, ...]:
    """A namespace field: a list of labels (the store checks each label)."""
    value = b.get(name)
    if not _strings(value):
        raise Invalid(f"field '{name}' must be a list of strings")
    return tuple(value)


def _optional_namespace(b: Mapping[str, JSON], name: str) -> tuple[str, ...] | None:
    return None if b.get(name) is None else _namespace(b, name)


def _value(b: Mapping[str, JSON]) -> dict[str, JSON]:
    value: dict[str, JSON] | None = schema.field(b, "value", dict, None)
    if value is None:
        raise Invalid("field 'value' must be an object")
    return value


def _strings(value: JSON) -> TypeGuard[list[str]]:
    return isinstance(value, list) and all(isinstance(x, str) for x in value)
