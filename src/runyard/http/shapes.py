"""What the server answers: each JSON response body as a model, for the document.

The handlers build their answers with :mod:`.render` and the engine's own
functions; these models say what those answers are, field by field, and
``/openapi.json`` publishes them. They forbid fields they do not name, so an
answer that gains or loses a field without its model fails the conformance
tests (``tests/test_openapi.py`` checks the renderers against them, and
schemathesis checks the live server) instead of drifting from the document.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from ..model import CancelReason, MultitaskStrategy, RunStatus, ThreadStatus
from .schema import Object

Timestamp = str  # RFC 3339, UTC, microseconds (runyard.wire.iso)


class Shape(BaseModel):
    """An answer: every field named, every field always present."""

    model_config = ConfigDict(extra="forbid")


class _Partial(Shape):
    """A shape whose fields may each be left out (never sent as null)."""

    @staticmethod
    def _absent_not_null(schema: dict[str, Any]) -> None:
        for prop in schema.get("properties", {}).values():
            prop.pop("default", None)

    model_config = ConfigDict(json_schema_extra=_absent_not_null)


def _optional(shape: type[Shape]) -> dict[str, Any]:
    """``shape``'s fields, each one optional: the arguments of pydantic's create_model."""
    return {
        name: (info.annotation, Field(default=None, description=info.description))
        for name, info in shape.model_fields.items()
    }


class Error(Shape):
    """An error: what went wrong, in words written for the client."""

    detail: str


class ErrorInfo(Shape):
    """Why a run failed: an error type and a message safe to show."""

    error: str
    message: str


class Ok(Shape):
    """Alive."""

    ok: Literal[True]


class Ready(Shape):
    """Ready for traffic, or why not."""

    ready: bool
    reason: Literal["draining", "starting", "store"] | None = Field(
        default=None, description="absent when ready"
    )


class Info(Shape):
    """The server: its version, what it can do, how it keeps runs."""

    name: str
    version: str
    durability: Literal["events", "final"]
    accepting_runs: bool
    flags: dict[str, bool]
    capabilities: list[str]


class Run(Shape):
    """A run."""

    run_id: str
    thread_id: str
    assistant_id: str
    created_at: Timestamp
    updated_at: Timestamp
    status: RunStatus
    metadata: Object
    multitask_strategy: MultitaskStrategy
    kwargs: Object = Field(description="what the run was started with")
    cancel_reason: CancelReason | None
    error: ErrorInfo | None


class Interrupt(Shape):
    """A pending interrupt: its id and the value the graph asked with."""

    id: str
    value: Any


class Thread(Shape):
    """A thread."""

    thread_id: str
    created_at: Timestamp
    updated_at: Timestamp
    metadata: Object
    status: ThreadStatus
    values: Any = Field(description="the thread's state: the output of its last successful run")
    interrupts: dict[str, list[Interrupt]] = Field(description="pending interrupts by task id")


class CheckpointOf(Shape):
    """A checkpoint of a thread."""

    thread_id: str
    checkpoint_ns: str
    checkpoint_id: str | None
    checkpoint_map: Object | None


class Task(Shape):
    """A task of a graph's step: the node it runs, its error and interrupts."""

    id: str
    name: str
    path: list[Any]
    error: ErrorInfo | None
    interrupts: list[Interrupt]
    checkpoint: Object | None
    state: ThreadState | None
    result: Any


class ThreadState(Shape):
    """A thread's state at one checkpoint (LangGraph's ThreadState)."""

    values: Any
    next: list[str] = Field(description="the nodes still to run")
    tasks: list[Task]
    metadata: Object | None
    created_at: Timestamp | None
    checkpoint: CheckpointOf | None
    parent_checkpoint: CheckpointOf | None
    interrupts: list[Interrupt]
    checkpoint_id: str | None = Field(description="LangGraph's older name for checkpoint's id")
    parent_checkpoint_id: str | None


Task.model_rebuild()  # a task's state is a ThreadState: defined only now


class StateUpdated(Shape):
    """The checkpoint an update wrote."""

    checkpoint: CheckpointOf | None
    configurable: CheckpointOf | None = Field(description="LangGraph's older name for the same")
    checkpoint_id: str | None


class AssistantVersion(Shape):
    """One version of an assistant: made once, so it has no updated_at."""

    assistant_id: str
    graph_id: str
    name: str
    description: str | None
    config: Object
    context: Object
    metadata: Object
    version: int
    created_at: Timestamp


class Assistant(AssistantVersion):
    """An assistant: a registered graph with a configuration."""

    updated_at: Timestamp


if TYPE_CHECKING:
    SelectedAssistant = Assistant
else:  # the fields of Assistant, each optional
    SelectedAssistant = create_model(
        "SelectedAssistant",
        __base__=_Partial,
        __doc__="An assistant found by a search: only the select fields when some were named.",
        **_optional(Assistant),
    )


class Drawing(Shape):
    """A graph's nodes and edges, as LangGraph draws them."""

    model_config = ConfigDict(extra="allow")

    nodes: list[Object]
    edges: list[Object]


class GraphSchemas(Shape):
    """The JSON schemas of a graph's parts (null where the graph has none)."""

    graph_id: str | None = Field(default=None, description="absent for a subgraph")
    input_schema: Object | None
    output_schema: Object | None
    state_schema: Object | None
    config_schema: Object | None
    context_schema: Object | None


class Item(Shape):
    """An item of the memory store."""

    namespace: list[str]
    key: str
    value: Object
    created_at: Timestamp
    updated_at: Timestamp


class ScoredItem(Item):
    """An item found by a search."""

    score: float | None = Field(description="always null: runyard has no vector index")


class Items(Shape):
    """The items a search found, newest first."""

    items: list[ScoredItem]


class Namespaces(Shape):
    """The namespaces that hold items."""

    namespaces: list[list[str]]
