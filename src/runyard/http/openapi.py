"""The OpenAPI document, built from the routes the app really registered.

Handlers are registered through :class:`Routes`, which puts the summary next to the
route; enums and limits come from the model and from :mod:`.schema`, so the
document cannot drift from what the handlers accept.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

from flask.sansio.app import App
from quart import Blueprint, Quart

from ..model import JSON
from . import schema

Handler = TypeVar("Handler", bound=Callable[..., Awaitable[Any]])

# Where the summaries of one app's routes live, keyed by (rule, method).
SUMMARIES_KEY = "runyard.openapi"

_OBJ: JSON = {"type": "object", "additionalProperties": True}
_MODES: JSON = {
    "oneOf": [
        {"type": "string"},
        {"type": "array", "items": {"type": "string"}},
    ]
}
_SECONDS: JSON = {"type": "number", "minimum": 0, "maximum": schema.MAX_SECONDS}


def _enum(values: Iterable[str]) -> JSON:
    return {"type": "string", "enum": list(values)}


SCHEMAS: dict[str, JSON] = {
    "Error": {
        "type": "object",
        "properties": {"detail": {"type": "string"}},
        "required": ["detail"],
    },
    "RunCreate": {
        "type": "object",
        "required": ["assistant_id"],
        "properties": {
            "assistant_id": {"type": "string", "minLength": 1},
            "input": {},
            "metadata": _OBJ,
            "config": _OBJ,
            "context": _OBJ,
            "stream_mode": _MODES,
            "stream_resumable": {"type": "boolean"},
            "on_disconnect": _enum(schema.ON_DISCONNECT),
            "multitask_strategy": _enum(schema.STRATEGIES),
            "if_not_exists": _enum(schema.IF_NOT_EXISTS),
            "after_seconds": _SECONDS,
            "timeout_seconds": _SECONDS,
            "webhook": {"type": "string"},
        },
    },
    "Run": {
        "type": "object",
        "properties": {
            "run_id": {"type": "string"},
            "thread_id": {"type": "string"},
            "assistant_id": {"type": "string"},
            "created_at": {"type": "string"},
            "updated_at": {"type": "string"},
            "status": _enum(schema.RUN_STATUSES),
            "metadata": _OBJ,
            "kwargs": _OBJ,
            "multitask_strategy": {"type": "string"},
            "cancel_reason": {"type": ["string", "null"]},
            "error": {"type": ["object", "null"]},
        },
    },
    "ThreadCreate": {
        "type": "object",
        "properties": {
            "thread_id": {"type": "string"},
            "metadata": _OBJ,
            "if_exists": _enum(schema.IF_EXISTS),
        },
    },
    "Search": {  # threads and assistants: each reads the fields it knows
        "type": "object",
        "properties": {
            "metadata": _OBJ,
            "status": {"type": "string"},
            "graph_id": {"type": "string"},
            "limit": {"type": "integer", "minimum": 1, "maximum": schema.MAX_LIMIT},
            "offset": {"type": "integer", "minimum": 0},
        },
    },
    "Thread": {
        "type": "object",
        "properties": {
            "thread_id": {"type": "string"},
            "created_at": {"type": "string"},
            "updated_at": {"type": "string"},
            "metadata": _OBJ,
            "status": {"type": "string"},
            "values": {},
            "interrupts": _OBJ,
        },
    },
}

# Request bodies by the last segment of the route.
_BODIES = {
    "runs": "RunCreate",
    "stream": "RunCreate",
    "wait": "RunCreate",
    "search": "Search",
    "threads": "ThreadCreate",
}


class Routes:
    """Registers handlers on a blueprint, each route with the summary the document shows.

    Stack two routes on one handler to serve a thread route and its thread-less
    form: the short form passes ``defaults={"thread_id": None}``.
    """

    def __init__(self, blueprint: Blueprint) -> None:
        self.blueprint = blueprint

    def __call__(
        self, rule: str, *methods: str, summary: str, defaults: dict[str, Any] | None = None
    ) -> Callable[[Handler], Handler]:
        def register(handler: Handler) -> Handler:
            self.blueprint.add_url_rule(
                rule, view_func=handler, methods=list(methods), defaults=defaults or {}
            )
            self.blueprint.record(
                lambda state: describe(
                    state.app, (state.url_prefix or "").rstrip("/") + rule, methods, summary
                )
            )
            return handler

        return register


def describe(app: App, rule: str, methods: Iterable[str], summary: str) -> None:
    summaries: dict[tuple[str, str], str] = app.extensions.setdefault(SUMMARIES_KEY, {})
    for method in methods:
        summaries[(rule, method)] = summary


def document(app: Quart, version: str) -> JSON:
    summaries: dict[tuple[str, str], str] = app.extensions.get(SUMMARIES_KEY, {})
    paths: dict[str, dict[str, JSON]] = {}
    for rule in app.url_map.iter_rules():
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            summary = summaries.get((rule.rule, method))
            if summary is None:
                continue  # static files and other internals
            path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule)
            paths.setdefault(path, {})[method.lower()] = _operation(path, method, summary)
    return {
        "openapi": "3.1.0",
        "info": {"title": "runyard", "version": version},
        "paths": dict(sorted(paths.items())),
        "components": {"schemas": SCHEMAS},
    }


def _operation(path: str, method: str, summary: str) -> JSON:
    params = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in re.findall(r"{(\w+)}", path)
    ]
    if path.endswith("/runs/{run_id}/stream"):
        params.append({"name": "Last-Event-ID", "in": "header", "schema": {"type": "string"}})
    op: dict[str, JSON] = {
        "summary": summary,
        "responses": {
            "200": {"description": "OK"},
            "4XX": {
                "description": "A client error",
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
            },
        },
    }
    if params:
        op["parameters"] = params
    last = path.rsplit("/", 1)[-1]
    if method == "POST" and last in _BODIES:
        ref = {"$ref": f"#/components/schemas/{_BODIES[last]}"}
        op["requestBody"] = {"content": {"application/json": {"schema": ref}}}
    return op
