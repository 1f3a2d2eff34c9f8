"""LangGraph values as plain JSON: what runyard logs, stores and answers."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any


def jsonable(value: Any) -> Any:
    """LangGraph values (messages are pydantic models) as plain JSON values."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        return jsonable(dump())
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return jsonable(dataclasses.asdict(value))
    return value
