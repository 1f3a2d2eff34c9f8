"""Request validation: JSON bodies and query strings into typed values.

Every failure is an :class:`~runyard.errors.Invalid` (422) naming the field,
or a :class:`~runyard.errors.BadRequest` (400) for a body that is not JSON.
Unknown fields are ignored: the LangGraph SDK sends many that runyard does
not use.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Mapping
from typing import Any, TypeVar

from ..errors import BadRequest, Invalid
from ..model import JSON, MultitaskStrategy, RunRequest, RunStatus, ThreadStatus

T = TypeVar("T")

# Nesting deeper than this is refused before it can cost recursion elsewhere.
MAX_DEPTH = 64
# Half of a UTF-16 pair on its own: valid in a JSON escape, not encodable as UTF-8.
_SURROGATE = re.compile("[\ud800-\udfff]")
# The stream modes LangGraph's SDK may ask for.
STREAM_MODES = frozenset(
    {"values", "updates", "custom", "messages", "messages-tuple", "events", "debug", "tasks",
     "checkpoints", "tools", "lifecycle"}
)  # fmt: skip
# What a background run logs, so any later join can pick (LangGraph's "union of all modes").
BACKGROUND_MODES = ("values", "updates", "custom", "messages-tuple")
# The choices of the body and query fields (API.md), each checked here and nowhere else.
ON_DISCONNECT = ("cancel", "continue")
IF_NOT_EXISTS = ("reject", "create")
IF_EXISTS = ("raise", "do_nothing")
CANCEL_ACTIONS = ("interrupt", "rollback")
RUN_STATUSES = tuple(s.value for s in RunStatus)
THREAD_STATUSES = tuple(s.value for s in ThreadStatus)
STRATEGIES = tuple(m.value for m in MultitaskStrategy)
DEFAULT_LIMIT = 10  # a page of a list or search, as on LangGraph
FEED_LIMIT = 50  # recent runs in the dashboard feed's first snapshot
MAX_LIMIT = 1000  # a page no larger than the server answers in one go
MAX_SECONDS = 366 * 24 * 3600  # a year: a later start or a longer timeout is a mistake


# A thread id a client chooses: it lands in URLs and headers, so no spaces,
# slashes or control characters.
THREAD_ID = re.compile(r"[A-Za-z0-9._~:@+=-]{1,128}")


def valid_thread_id(value: str, name: str = "thread_id") -> str:
    if not THREAD_ID.fullmatch(value):
        raise Invalid(
            f"field '{name}' must be 1 to 128 letters, digits or ._~:@+=- (no spaces or slashes)"
        )
    return value


def parse_json(raw: bytes | str) -> JSON:
    """Decode a request body; an empty body is an empty object."""
    if not raw.strip():
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


def body_object(body: JSON) -> dict[str, JSON]:
    if not isinstance(body, dict):
        raise Invalid("the request body must be a JSON object")
    return body


def field(body: Mapping[str, JSON], name: str, kind: type[T] | tuple[type, ...], default: T) -> T:
    """``body[name]`` if present and not null, checked against ``kind``."""
    value = body.get(name)
    if value is None:
        return default
    bad_bool = isinstance(value, bool) and kind in (int, float, (int, float))
    if bad_bool or not isinstance(value, kind):
        raise Invalid(f"field '{name}' must be {_kind_name(kind)}")
    return value  # type: ignore[return-value]


def choice(body: Mapping[str, JSON], name: str, options: tuple[str, ...], default: str) -> str:
    value = field(body, name, str, default)
    if value not in options:
        raise Invalid(f"field '{name}' must be one of {', '.join(options)}")
    return value


def seconds(body: Mapping[str, JSON], name: str) -> float | None:
    value: float | None = field(body, name, (int, float), None)
    if value is not None and (not math.isfinite(value) or not 0 <= value <= MAX_SECONDS):
        raise Invalid(f"field '{name}' must be a number of seconds from 0 to {MAX_SECONDS}")
    return None if value is None else float(value)


def stream_modes(value: JSON, name: str = "stream_mode") -> list[str]:
    modes = [value] if isinstance(value, str) else value
    if not isinstance(modes, list) or not all(isinstance(m, str) for m in modes):
        raise Invalid(f"field '{name}' must be a string or a list of strings")
    unknown = sorted(set(modes) - STREAM_MODES)
    if unknown:
        raise Invalid(f"field '{name}' has unknown mode {unknown[0]!r}")
    return list(dict.fromkeys(modes)) or ["values"]


def _kind_name(kind: type | tuple[type, ...]) -> str:
    names = {str: "a string", int: "an integer", float: "a number", bool: "a boolean",
             dict: "an object", list: "a list"}  # fmt: skip
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if set(kinds) == {int, float}:
        return "a number"
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def metadata(body: Mapping[str, JSON], limit: int) -> dict[str, JSON]:
    """The ``metadata`` field: an object of at most ``limit`` bytes as JSON."""
    value = field(body, "metadata", dict, {})
    if len(json.dumps(value, separators=(",", ":"))) > limit:
        raise Invalid(f"field 'metadata' is larger than {limit} bytes")
    return value


@dataclasses.dataclass(slots=True)
class RunCreate:
    request: RunRequest
    on_disconnect: str
    stream_resumable: bool


def run_create(
    body: JSON,
    *,
    thread_id: str | None,
    owner: str,
    streaming: bool,
    max_metadata: int,
) -> RunCreate:
    """Validate a run-create body (``POST …/runs``, ``/stream``, ``/wait``)."""
    b = body_object(body)
    assistant_id = field(b, "assistant_id", str, "")
    if not assistant_id:
        raise Invalid("field 'assistant_id' is required")
    config = field(b, "config", dict, {})
    context = field(b, "context", dict, None)
    if context is not None:
        config = {**config, "context": context}
    strategy = choice(b, "multitask_strategy", STRATEGIES, "enqueue")
    if_not_exists = choice(b, "if_not_exists", IF_NOT_EXISTS, "reject")
    if thread_id is not None and if_not_exists == "create":
        valid_thread_id(thread_id, "thread_id (in the path)")
    request = RunRequest(
        assistant_id=assistant_id,
        input=b.get("input"),
        thread_id=thread_id,
        metadata=metadata(b, max_metadata),
        config=config,
        # A background run logs BACKGROUND_MODES; stream and wait default to values.
        stream_mode=stream_modes(
            b.get("stream_mode") or ("values" if streaming else list(BACKGROUND_MODES))
        ),
        multitask_strategy=MultitaskStrategy(strategy),
        if_not_exists=if_not_exists,
        after_seconds=seconds(b, "after_seconds") or 0.0,
        timeout_seconds=seconds(b, "timeout_seconds"),
        owner=owner,
    )
    # As on the reference server: a run goes on when its client leaves, unless told.
    on_disconnect = choice(b, "on_disconnect", ON_DISCONNECT, "continue")
    return RunCreate(request, on_disconnect, bool(field(b, "stream_resumable", bool, True)))


def paging(source: Mapping[str, Any], *, default_limit: int = DEFAULT_LIMIT) -> tuple[int, int]:
    """``limit`` and ``offset`` from a body or a query string."""
    limit = _int(source, "limit", default_limit)
    offset = _int(source, "offset", 0)
    if not 1 <= limit <= MAX_LIMIT:
        raise Invalid(f"field 'limit' must be between 1 and {MAX_LIMIT}")
    if offset < 0:
        raise Invalid("field 'offset' must be >= 0")
    return limit, offset


def _int(source: Mapping[str, Any], name: str, default: int) -> int:
    value = source.get(name)
    if value is None:
        return default
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            raise Invalid(f"field '{name}' must be an integer") from None
    return field(source, name, int, default)


def flag(value: str | None, name: str, default: bool = False) -> bool:
    """A boolean query parameter: true/false, 1/0, yes/no."""
    if value is None or value == "":
        return default
    lowered = value.lower()
    if lowered in ("1", "true", "yes"):
        return True
    if lowered in ("0", "false", "no"):
        return False
    raise Invalid(f"query parameter '{name}' must be true or false")


def last_event_id(value: str | None) -> int | None:
    """The ``Last-Event-ID`` header: an event id (an integer >= 0), absent, or ``-1``.

    ``-1`` (what LangGraph's ``useStream`` sends when a page reloads) means
    "before the first event": the whole log is replayed, as without the header.
    """
    if value is None or value.strip() == "":
        return None
    try:
        seq = int(value.strip())
    except ValueError:
        raise BadRequest("Last-Event-ID must be an event id (an integer >= 0) or -1") from None
    if seq < -1:
        raise BadRequest("Last-Event-ID must be an event id (an integer >= 0) or -1")
    return seq
