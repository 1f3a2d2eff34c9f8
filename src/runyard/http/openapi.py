"""The OpenAPI document, built from the routes the app really registered."""

from __future__ import annotations

import re
from collections.abc import Iterable

from quart import Quart

from ..model import JSON

_OBJ: JSON = {"type": "object", "additionalProperties": True}
_MODES: JSON = {
    "oneOf": [
        {"type": "string"},
        {"type": "array", "items": {"type": "string"}},
    ]
}
_STRATEGIES = ["reject", "interrupt", "rollback", "enqueue"]

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
            "on_disconnect": {"type": "string", "enum": ["cancel", "continue"]},
            "multitask_strategy": {"type": "string", "enum": _STRATEGIES},
            "if_not_exists": {"type": "string", "enum": ["reject", "create"]},
            "after_seconds": {"type": "number", "minimum": 0, "maximum": 31622400},
            "timeout_seconds": {"type": "number", "minimum": 0, "maximum": 31622400},
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
            "status": {
                "type": "string",
                "enum": ["pending", "running", "success", "error", "timeout", "interrupted"],
            },
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
            "if_exists": {"type": "string", "enum": ["raise", "do_nothing"]},
        },
    },
    "Search": {
        "type": "object",
        "properties": {
            "metadata": _OBJ,
            "status": {"type": "string"},
            "graph_id": {"type": "string"},
            "limit": {"type": "integer", "minimum": 1, "maximum": 1000},
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

SUMMARIES_KEY = "RUNYARD_OPENAPI_SUMMARIES"


def describe(app: Quart, rule: str, methods: Iterable[str], summary: str) -> None:
    summaries: dict[tuple[str, str], str] = app.config.setdefault(SUMMARIES_KEY, {})
    for method in methods:
        summaries[(rule, method)] = summary


def document(app: Quart, version: str) -> JSON:
    summaries: dict[tuple[str, str], str] = app.config.get(SUMMARIES_KEY, {})
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
