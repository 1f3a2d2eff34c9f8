"""Request validation: JSON bodies and query strings into checked, typed models.

Each body and query string a route takes is a pydantic model (:mod:`.bodies`);
the route's declaration (:mod:`.routes`) validates every request with it and
``/openapi.json`` (:mod:`.openapi`) describes it, so the checks and the
document cannot drift apart. This module holds what those models share: the
base classes, the field types, and the one translation of a failure into an
:class:`~runyard.errors.Invalid` (422) naming the field. A body that is not
JSON is a :class:`~runyard.errors.BadRequest` (400).

Unknown fields are ignored (the LangGraph SDK sends many runyard does not
use), a field sent as null is the same as one left out (the SDK sends nulls
for what it was not given), and nothing is coerced: ``"1"`` is not a number.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal, TypeVar, get_args, get_origin

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    ValidationError,
    ValidationInfo,
    WithJsonSchema,
    model_validator,
)
from pydantic_core import ErrorDetails, PydanticCustomError
from werkzeug.datastructures import MultiDict

from ..errors import BadRequest, Invalid
from ..model import JSON, RunStatus, ThreadStatus, json_size

M = TypeVar("M", bound=BaseModel)

# Nesting deeper than this is refused before it can cost recursion elsewhere.
MAX_DEPTH = 64
# Half of a UTF-16 pair on its own: valid in a JSON escape, not encodable as UTF-8.
_SURROGATE = re.compile("[\ud800-\udfff]")
# The stream modes LangGraph's SDK may ask for.
StreamMode = Literal[
    "values", "updates", "custom", "messages", "messages-tuple", "events", "debug", "tasks",
    "checkpoints", "tools", "lifecycle",
]  # fmt: skip
STREAM_MODES = frozenset(get_args(StreamMode))
# What a background run logs, so any later join can pick (LangGraph's "union of all modes").
BACKGROUND_MODES = ("values", "updates", "custom", "messages-tuple")
DEFAULT_LIMIT = 10  # a page of a list or search, as on LangGraph
FEED_LIMIT = 50  # recent runs in the dashboard feed's first snapshot
MAX_LIMIT = 1000  # a page no larger than the server answers in one go
MAX_INTEGER = 2**63 - 1  # the largest integer SQLite binds: an offset or a version goes to SQL
MAX_SECONDS = 366 * 24 * 3600  # a year: a later start or a longer timeout is a mistake
# The key of a validation context that carries the server's metadata limit (bytes).
MAX_METADATA = "max_metadata"
# A thread id a client chooses: it lands in URLs and headers, so no spaces,
# slashes or control characters.
THREAD_ID = r"^[A-Za-z0-9._~:@+=-]{1,128}$"
# A query parameter's integer: digits, bounded so int() never meets a huge string.
_INTEGER = re.compile(r"-?[0-9]{1,20}")
# The event id of a Last-Event-ID header: an id, or -1 for "before the first".
_EVENT_ID = re.compile(r"-1|[0-9]{1,20}")


def parse_json(raw: bytes | str) -> JSON:
    """Decode a request body; an empty body is an empty object (blanks alone are not JSON)."""
    if not raw:
        return {}
    try:
        value = json.loads(raw, parse_constant=_no_constant)
    except RecursionError:
        # Python 3.11's parser gives up on deep nesting that 3.13's parses: one answer.
        raise Invalid(f"the request body nests deeper than {MAX_DEPTH} levels") from None
    except ValueError as exc:
        raise BadRequest("the request body is not valid JSON") from exc
    _check_shape(value)
    return value


def _no_constant(name: str) -> JSON:
    raise ValueError(f"{name} is not JSON")  # NaN, Infinity: Python accepts them, JSON does not


def _check_shape(value: JSON) -> None:
    """Nesting depth and text, iteratively (a recursive walk could overflow on hostile
    input): a lone surrogate (``"\\ud800"``) parses but can be neither stored nor sent."""
    stack: list[tuple[JSON, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise Invalid(f"the request body nests deeper than {MAX_DEPTH} levels")
        if isinstance(item, dict):
            stack.extend((k, depth + 1) for k in item)
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
        elif isinstance(item, str) and _SURROGATE.search(item):
            raise BadRequest("the request body has a lone surrogate (an invalid \\u escape)")


# -- the models ---------------------------------------------------------------


def null_allowed(schema: dict[str, Any]) -> None:
    """In the document, an optional field may also be null (:class:`Body` drops nulls)."""
    required = set(schema.get("required", ()))
    for name, prop in schema.get("properties", {}).items():
        if name in required or _takes_null(prop) or not set(prop) - {"default", "description"}:
            continue  # required, null already allowed, or any value at all
        kept = {k: prop.pop(k) for k in ("default", "description") if k in prop}
        schema["properties"][name] = {"anyOf": [prop, {"type": "null"}], **kept}


def _takes_null(prop: dict[str, Any]) -> bool:
    return prop.get("type") == "null" or any(_takes_null(p) for p in prop.get("anyOf", ()))


class Body(BaseModel):
    """A JSON request body: unknown fields ignored, null the same as absent, no coercion."""

    model_config = ConfigDict(
        extra="ignore", strict=True, frozen=True, json_schema_extra=null_allowed
    )

    @model_validator(mode="before")
    @classmethod
    def _drop_nulls(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if v is not None}
        return data


class Query(BaseModel):
    """A query string: text, so an integer field takes a parameter of digits.

    A field whose type is a list takes every value of a repeated parameter
    (:func:`parse_query`); any other field takes the first.
    """

    model_config = ConfigDict(extra="ignore", strict=True, frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _integers(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        found = dict(data)
        for name, info in cls.model_fields.items():
            value = found.get(name)
            if info.annotation is int and isinstance(value, str) and _INTEGER.fullmatch(value):
                found[name] = int(value)
        return found


def parse(model: type[M], data: Any, *, context: Mapping[str, Any] | None = None) -> M:
    """``data`` (a decoded JSON body) as ``model``, or :class:`Invalid` naming the field."""
    try:
        return model.model_validate(data, context=dict(context or {}))
    except ValidationError as exc:
        raise Invalid(_explain(exc.errors(), data, "field")) from None


def parse_query(model: type[M], args: MultiDict[str, str]) -> M:
    """A query string as ``model``, or :class:`Invalid` naming the parameter."""
    data: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        if name not in args:
            continue
        data[name] = args.getlist(name) if get_origin(info.annotation) is list else args[name]
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise Invalid(_explain(exc.errors(), data, "query parameter")) from None


# What a failed check says a field must be, by pydantic's error type.
_WANTED = {
    "string_type": "a string", "int_type": "an integer", "float_type": "a number",
    "bool_type": "a boolean", "dict_type": "an object", "model_type": "an object",
    "list_type": "a list", "missing": "given",
}  # fmt: skip


def _explain(errors: list[ErrorDetails], data: Any, where: str) -> str:
    """One sentence for the deepest failure: ``field 'a.b' must be a string``.

    pydantic puts the name of a union's member in an error's location; walking
    the data drops those, so the name is the field's path as the client sent it.
    Where a value fits none of a union's members, their wants are joined by "or".
    """
    located = [(_path(e["loc"], data, e["type"] == "missing"), e) for e in errors]
    deepest = max(len(path) for path, _ in located)
    path = next(p for p, _ in located if len(p) == deepest)
    wants = list(dict.fromkeys(_want(e) for p, e in located if p == path))
    if not path:
        return "the request body must be a JSON object"
    name = ".".join(str(p) for p in path)
    if all(w.startswith("must be ") for w in wants):
        return f"{where} '{name}' must be " + " or ".join(w[8:] for w in wants)
    return f"{where} '{name}' " + "; ".join(wants)


def _path(loc: tuple[int | str, ...], data: Any, missing: bool) -> tuple[int | str, ...]:
    """The parts of ``loc`` that are keys and indexes of ``data`` (and a missing field)."""
    path: list[int | str] = []
    for i, part in enumerate(loc):
        has = isinstance(data, dict) and part in data
        has = has or (isinstance(data, list) and isinstance(part, int) and 0 <= part < len(data))
        if has:
            data = data[part]
        elif not (missing and i == len(loc) - 1):
            continue  # a union member's name
        path.append(part)
    return tuple(path)


def _want(error: ErrorDetails) -> str:
    kind = error["type"]
    if kind == "missing":
        return "is required"
    if kind in _WANTED:
        return "must be " + _WANTED[kind]
    if kind == "extra_forbidden":
        return "is not a field runyard knows here"
    message = error["msg"]
    for prefix, verb in (("Input should be ", "must be "), ("Value should be ", "must be ")):
        if message.startswith(prefix):
            return verb + message[len(prefix) :]
    for noun in ("String", "List", "Dictionary", "Value"):
        if message.startswith(noun + " should "):
            return "must " + message[len(noun) + 8 :]
    return message.removeprefix("Value error, ")


# -- field types shared by the models -----------------------------------------


def _whole(value: Any) -> Any:
    """An integral float (``10.0``) as the integer it is: JSON Schema counts it as one."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _small_enough(value: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
    limit = (info.context or {}).get(MAX_METADATA)
    if limit is not None and json_size(value) > limit:
        raise PydanticCustomError(
            "too_large", "must be at most {limit} bytes as JSON", {"limit": limit}
        )
    return value


def _one_or_many(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


def _flag(value: Any) -> Any:
    lowered = value.lower() if isinstance(value, str) else value
    return {"true": True, "1": True, "false": False, "0": False}.get(lowered, value)


def _enum_schema(values: tuple[str, ...] | frozenset[str]) -> dict[str, Any]:
    return {"type": "string", "enum": sorted(values)}


# Constraints go before it: put after, pydantic would document them as unknown keywords.
WHOLE = BeforeValidator(_whole)
Limit = Annotated[
    int, Field(ge=1, le=MAX_LIMIT, description=f"a page's size, 1 to {MAX_LIMIT}"), WHOLE
]
Offset = Annotated[int, Field(ge=0, le=MAX_INTEGER, description="how many to skip"), WHOLE]
Seconds = Annotated[float, Field(ge=0, le=MAX_SECONDS, allow_inf_nan=False)]
Object = dict[str, Any]
Metadata = Annotated[
    dict[str, Any],
    AfterValidator(_small_enough),
    Field(description="an object; at most the server's max_metadata_bytes as JSON"),
]
ThreadId = Annotated[
    str,
    Field(pattern=THREAD_ID, description="1 to 128 letters, digits or ._~:@+=- (no spaces)"),
]
StreamModes = Annotated[
    list[StreamMode],
    BeforeValidator(_one_or_many),
    WithJsonSchema(
        {
            "anyOf": [
                _enum_schema(STREAM_MODES),
                {"type": "array", "items": _enum_schema(STREAM_MODES)},
            ]
        }
    ),
]
# Enums take their values (a JSON body has no enum instances to be strict about).
RunStatusName = Annotated[RunStatus, Strict(False)]
ThreadStatusName = Annotated[ThreadStatus, Strict(False)]
# A query parameter's boolean: true or false (any case), 1 or 0 (what the SDKs send).
Flag = Annotated[
    bool,
    BeforeValidator(_flag),
    WithJsonSchema({"type": "string", "enum": ["true", "false", "1", "0"]}),
]


def valid_thread_id(value: str, name: str = "thread_id") -> str:
    """A thread id from a path, checked as a body's :data:`ThreadId` is."""
    if not re.fullmatch(THREAD_ID, value):
        raise Invalid(f"{name} must be 1 to 128 letters, digits or ._~:@+=- (no spaces or slashes)")
    return value


def stream_modes(value: Sequence[str] | None, default: tuple[str, ...]) -> list[str]:
    """Modes without repeats, in the order asked; none asked: ``default``."""
    return list(dict.fromkeys(value or default))


def last_event_id(value: str | None) -> int | None:
    """The ``Last-Event-ID`` header: an event id (an integer >= 0), absent, or ``-1``.

    ``-1`` (what LangGraph's ``useStream`` sends when a page reloads) means
    "before the first event": the whole log is replayed, as without the header.
    """
    if value is None or value == "":
        return None
    if not _EVENT_ID.fullmatch(value):
        raise BadRequest("Last-Event-ID must be an event id (an integer >= 0) or -1")
    return int(value)


# The header as the document states it: what last_event_id() takes.
LAST_EVENT_ID_SCHEMA = {"type": "string", "pattern": f"^({_EVENT_ID.pattern})?$"}
