"""The OpenAPI 3.1 document, built from the routes the app really registered.

Each route's declaration (:mod:`.routes`) names the models that check its
body and query string (:mod:`.bodies`), the shapes of its answers
(:mod:`.shapes`) and the errors it raises; pydantic turns the models into
JSON Schema, and this module lays them out as OpenAPI. Nothing here is
written twice: a field, a limit or a default comes from the model that
enforces it, an error's status from :mod:`.errors`.

Implied by a declaration, so not repeated in it: a body can be malformed
(400), too large (413) or invalid (422); a query string invalid (422); a path
with an id can name nothing (404); a route that touches the store can find it
failing (503); with tokens configured, a route outside ``access.PUBLIC_PATHS``
needs one (401).
"""

from __future__ import annotations

import copy
import re
from collections import defaultdict
from collections.abc import Iterable
from typing import Any, get_args, get_origin

from pydantic import BaseModel, TypeAdapter
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaMode
from quart import Quart

from ..errors import (
    BadRequest,
    Invalid,
    NotFound,
    PayloadTooLarge,
    RunyardError,
    StoreError,
    Unauthorized,
)
from ..model import JSON
from . import errors, schema, shapes
from .access import PUBLIC_PATHS
from .context import EXTENSION, Runyard
from .routes import Json, Media, Operation, operations

REF = "#/components/schemas/{model}"
# Where an app keeps its document once built.
DOCUMENT_KEY = "runyard.openapi.document"
_JSON = "application/json"


class _Generator(GenerateJsonSchema):
    """pydantic's JSON Schema, without a title on every field (the name says it)."""

    def field_title_should_be_set(self, schema: Any) -> bool:
        return False


def served(app: Quart, version: str) -> JSON:
    """:func:`document`, built on the first request and kept: the routes are fixed by then."""
    found: JSON = app.extensions.get(DOCUMENT_KEY)
    if found is None:
        found = app.extensions[DOCUMENT_KEY] = document(app, version)
    return found


def document(app: Quart, version: str) -> JSON:
    """The whole document for ``app`` as configured (its tokens decide the 401s)."""
    declared = operations(app)
    tokens = _tokens(app)
    shapes_of, components = _schemas(declared.values())
    paths: dict[str, dict[str, JSON]] = {}
    for rule in app.url_map.iter_rules():
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            op = declared.get((rule.rule, method))
            if op is None:
                continue  # static files and other internals
            path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule)
            entry = _operation(path, op, shapes_of, components)
            if tokens and rule.rule in PUBLIC_PATHS:
                entry["security"] = []  # reachable without a token
            elif tokens:
                responses = {
                    **entry["responses"],
                    **_errors_answered({Unauthorized: None}, shapes_of),
                }
                entry["responses"] = dict(sorted(responses.items()))
            entry["tags"] = [rule.endpoint.partition(".")[0]]
            paths.setdefault(path, {})[method.lower()] = entry
    doc: dict[str, JSON] = {
        "openapi": "3.1.0",
        "info": {
            "title": "runyard",
            "version": version,
            "description": "The LangGraph runs API, as this runyard server speaks it.",
        },
        "paths": dict(sorted(paths.items())),
        "components": {"schemas": dict(sorted(components.items()))},
    }
    if tokens:
        doc["components"]["securitySchemes"] = {
            "bearer": {"type": "http", "scheme": "bearer"},
            "apiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"},
        }
        doc["security"] = [{"bearer": []}, {"apiKey": []}]
    return doc


def _tokens(app: Quart) -> bool:
    state = app.extensions.get(EXTENSION)
    return isinstance(state, Runyard) and bool(state.tokens)


def _schemas(ops: Iterable[Operation]) -> tuple[dict[Any, JSON], dict[str, JSON]]:
    """Every model's schema in one pass, so shared ones become one component each."""
    wanted: dict[tuple[Any, JsonSchemaMode], TypeAdapter[Any]] = {
        (shapes.Error, "serialization"): TypeAdapter(shapes.Error)
    }
    for op in ops:
        for model in (op.body, op.query):
            if model is not None:
                wanted[(model, "validation")] = TypeAdapter(model)
        for answer in op.answers.values():
            shape = answer.shape if isinstance(answer, Json) else answer
            if not isinstance(shape, Media):
                wanted[(shape, "serialization")] = TypeAdapter(shape)
    found, top = TypeAdapter.json_schemas(
        [(key, mode, adapter) for (key, mode), adapter in wanted.items()],
        ref_template=REF,
        schema_generator=_Generator,
    )
    by_type = {key: schema for (key, _), schema in found.items()}
    return by_type, dict(top.get("$defs", {}))


_TEXT: JSON = {"type": "string"}
# A thread id in a path is one a thread may have (a run creates a thread by it).
_PATH_SCHEMAS: dict[str, JSON] = {"thread_id": {"type": "string", "pattern": schema.THREAD_ID}}


def _operation(
    path: str,
    op: Operation,
    shapes_of: dict[Any, JSON],
    components: dict[str, JSON],
) -> dict[str, JSON]:
    params: list[JSON] = [
        {"name": name, "in": "path", "required": True, "schema": _PATH_SCHEMAS.get(name, _TEXT)}
        for name in re.findall(r"{(\w+)}", path)
    ]
    if op.query is not None:
        params.extend(_query_parameters(_component(shapes_of[op.query], components)))
    params.extend(
        {"name": h.name, "in": "header", "schema": h.schema, "description": h.description}
        for h in op.headers
    )
    entry: dict[str, JSON] = {"summary": op.summary}
    if params:
        entry["parameters"] = params
    if op.body is not None:
        model = _component(shapes_of[op.body], components)
        entry["requestBody"] = {
            "required": bool(model.get("required")),
            "content": {_JSON: {"schema": shapes_of[op.body]}},
        }
    responses = {str(status): _answer(a, shapes_of) for status, a in sorted(op.answers.items())}
    for status, answer in _errors_answered(_raised(path, op), shapes_of).items():
        responses.setdefault(status, answer)
    entry["responses"] = responses
    return entry


def _component(ref: JSON, components: dict[str, JSON]) -> dict[str, Any]:
    """A copy of the schema ``ref`` points to."""
    name = ref["$ref"].rsplit("/", 1)[-1] if "$ref" in ref else None
    found: dict[str, Any] = copy.deepcopy(components[name] if name else ref)
    return found


def _query_parameters(model: dict[str, Any]) -> list[JSON]:
    required = set(model.get("required", ()))
    params: list[JSON] = []
    for name, prop in model.get("properties", {}).items():
        param: dict[str, JSON] = {"name": name, "in": "query", "required": name in required}
        if "description" in prop:
            param["description"] = prop.pop("description")
        param["schema"] = prop
        params.append(param)
    return params


def _answer(answer: Any, shapes_of: dict[Any, JSON]) -> JSON:
    if isinstance(answer, Media):
        if answer.type is None:
            return {"description": answer.description}
        return {
            "description": answer.description,
            "content": {answer.type: {"schema": {"type": "string"}}},
        }
    shape, description = (
        (answer.shape, answer.description) if isinstance(answer, Json) else (answer, _doc(answer))
    )
    return {"description": description, "content": {_JSON: {"schema": shapes_of[shape]}}}


def _doc(shape: Any) -> str:
    """What a JSON answer is: its model's docstring (of the items, for a list)."""
    if get_origin(shape) is list:
        return "A list, each one: " + _doc(get_args(shape)[0])
    if isinstance(shape, type) and issubclass(shape, BaseModel) and shape.__doc__:
        return _first_line(shape.__doc__)
    return "OK"


def _first_line(doc: str) -> str:
    return doc.strip().splitlines()[0].rstrip(".").replace("``", "")


def _raised(path: str, op: Operation) -> dict[type[RunyardError], None]:
    """The errors a route can answer: declared, and implied by what it takes."""
    raised: list[type[RunyardError]] = list(op.raises)
    if op.body is not None:
        raised += [BadRequest, PayloadTooLarge, Invalid]
    if op.query is not None:
        raised.append(Invalid)
    raised += [h.refused_with for h in op.headers if h.refused_with is not None]
    if "{" in path:
        raised.append(NotFound)
    if op.stored:
        raised.append(StoreError)
    return dict.fromkeys(raised)


def _errors_answered(
    raised: dict[type[RunyardError], None], shapes_of: dict[Any, JSON]
) -> dict[str, JSON]:
    """The responses of ``raised``, one per status, each error's docstring its reason."""
    by_status: dict[int, list[str]] = defaultdict(list)
    for cls in raised:
        by_status[errors.status_for(cls)].append(_doc_of(cls))
    answers: dict[str, JSON] = {}
    for status, reasons in sorted(by_status.items()):
        answer: dict[str, JSON] = {
            "description": "; ".join(reasons),
            "content": {_JSON: {"schema": shapes_of[shapes.Error]}},
        }
        header = errors.HEADERS.get(status)
        if header is not None:
            name, description = header
            answer["headers"] = {
                name: {"description": description, "schema": {"type": "string"}, "required": True}
            }
        answers[str(status)] = answer
    return answers


def _doc_of(cls: type[RunyardError]) -> str:
    return _first_line(cls.__doc__ or cls.__name__)
