"""LangGraph values as plain JSON: what runyard logs, stores and answers."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

# Values that are JSON already; checked by exact type first, the common case by far
# (a conversation's state is mostly strings inside dicts inside lists).
_PLAIN = frozenset({str, int, float, bool, type(None)})


def jsonable(value: Any) -> Any:
    """LangGraph values (messages are pydantic models) as plain JSON values."""
    kind = type(value)
    if kind in _PLAIN:
        return value
    if kind is dict:
        return {
            k if type(k) is str else str(k): v if type(v) in _PLAIN else jsonable(v)
            for k, v in value.items()
        }
    if kind is list or kind is tuple:
        return [v if type(v) in _PLAIN else jsonable(v) for v in value]
    return _converted(value)


def _converted(value: Any) -> Any:
    """The slow path: other mappings and sequences, pydantic models, dataclasses."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        try:  # pydantic writes its own models as JSON values fastest
            return dump(mode="json", warnings=False)
        except Exception:  # a value it cannot write (or not pydantic's model_dump)
            return jsonable(dump())
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return jsonable(dataclasses.asdict(value))
    return value
