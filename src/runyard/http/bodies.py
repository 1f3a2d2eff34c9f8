"""What clients send: each request body and query string as a model.

A route names its models where it is declared (``@route(..., body=ThreadCreate)``,
:mod:`.routes`); every request is checked against them before the handler
runs, and the handler gets the checked values. ``/openapi.json`` describes the
same models, defaults included: a default is stated here and nowhere else in
the HTTP layer. The LangGraph fields of a run body are in :mod:`.graph_options`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BeforeValidator, Field, Strict
from pydantic_core import PydanticCustomError

from ..model import LABEL_FORBIDDEN, MAX_TTL_MINUTES, MultitaskStrategy, RunRequest
from ..webhook_policy import MAX_URL
from .graph_options import REQUEST_DEFAULTS, Checkpoint, GraphOptions
from .schema import (
    BACKGROUND_MODES,
    DEFAULT_LIMIT,
    FEED_LIMIT,
    MAX_INTEGER,
    WHOLE,
    Body,
    Flag,
    Limit,
    Metadata,
    Object,
    Offset,
    Query,
    RunStatusName,
    Seconds,
    StreamMode,
    StreamModes,
    ThreadId,
    ThreadStatusName,
    stream_modes,
    valid_thread_id,
)

if TYPE_CHECKING:
    AssistantField = str
    SortKey = str
else:  # the choices live with the code that uses them; pydantic reads them here
    from ..assistants import SORTABLE
    from .render import ASSISTANT_FIELDS

    AssistantField = Literal[ASSISTANT_FIELDS]
    SortKey = Literal[SORTABLE]

NonEmpty = Annotated[str, Field(min_length=1)]
IfExists = Annotated[
    Literal["raise", "do_nothing"],
    Field(description="when the id is taken: raise (409), or answer the existing one"),
]
# A namespace path's label, as the store takes it (runyard.store.items.check_namespace).
_LABEL = "[^" + "".join(f"\\x{ord(c):02x}" for c in LABEL_FORBIDDEN) + "]+"
Label = Annotated[str, Field(pattern=f"^{_LABEL}$")]
Namespace = Annotated[list[Label], Field(min_length=1)]
# A page of namespaces, as LangGraph's SDK asks by default.
NAMESPACES_LIMIT = 100
# A webhook's address as runyard.webhook_policy takes it: http or https, a host name, an
# IPv4 address or an [IPv6] one, a port up to 65535, no credentials. One the server's
# policy forbids (a private address) is a 422 of its own.
_H = "[0-9A-Fa-f]{1,4}"
_IPV6 = "|".join(
    (
        f"({_H}:){{7}}{_H}", f"({_H}:){{1,7}}:", f"({_H}:){{1,6}}:{_H}",
        f"({_H}:){{1,5}}(:{_H}){{1,2}}", f"({_H}:){{1,4}}(:{_H}){{1,3}}",
        f"({_H}:){{1,3}}(:{_H}){{1,4}}", f"({_H}:){{1,2}}(:{_H}){{1,5}}",
        f"{_H}:(:{_H}){{1,6}}", f":((:{_H}){{1,7}}|:)",
    )
)  # fmt: skip
_PORT = "6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[0-9]{1,4}"
_HOST = rf"(\[({_IPV6})\]|[^/?#@\s:\[\]]+)(:({_PORT}))?"
WebhookUrl = Annotated[str, Field(pattern=f"^https?://{_HOST}([/?#]\\S*)?$", max_length=MAX_URL)]


# -- runs ---------------------------------------------------------------------


class _RunFields(Body):
    """The fields of a run body that every agent reads (listed first in the document)."""

    assistant_id: NonEmpty = Field(description="an assistant's id, or a registered graph's name")
    input: Any = None
    metadata: Metadata = Field(default_factory=dict)
    config: Object = Field(default_factory=dict)
    context: Object | None = Field(default=None, description="the graph's context (under config)")
    stream_mode: StreamModes | None = Field(
        default=None,
        description="what the stream carries; default: values for stream and wait, and"
        f" {', '.join(BACKGROUND_MODES)} for a background run (what a join may pick from)",
    )
    stream_resumable: bool = Field(
        default=True, description="accepted: every runyard stream resumes"
    )
    on_disconnect: Literal["cancel", "continue"] = Field(
        default="continue", description="what a stream's or wait's run does when its client leaves"
    )
    multitask_strategy: Annotated[MultitaskStrategy, Strict(False)] = Field(
        default=REQUEST_DEFAULTS.multitask_strategy,
        description="what a run does to a thread that has one active",
    )
    if_not_exists: Literal["reject", "create"] = Field(
        default=REQUEST_DEFAULTS.if_not_exists,  # type: ignore[arg-type]
        description="a thread id that names no thread: 404, or make it",
    )
    after_seconds: Seconds = Field(
        default=REQUEST_DEFAULTS.after_seconds, description="start later"
    )
    timeout_seconds: Seconds | None = Field(
        default=REQUEST_DEFAULTS.timeout_seconds,
        description="the run ends 'timeout' after this long",
    )
    webhook: WebhookUrl | None = Field(
        default=None, description="POSTed the run's final state (docs/webhooks.md)"
    )


class RunCreate(GraphOptions, _RunFields):
    """A run to start: the body of POST …/runs, …/runs/stream and …/runs/wait."""

    def run_request(self, *, thread_id: str | None, owner: str, streaming: bool) -> RunRequest:
        """The request to start; ``thread_id`` from the path (None: a new thread)."""
        if thread_id is not None and self.if_not_exists == "create":
            valid_thread_id(thread_id, "thread_id (in the path)")
        config = dict(self.config)
        if self.context is not None:
            config["context"] = self.context
        return RunRequest(
            assistant_id=self.assistant_id,
            input=self.input,
            thread_id=thread_id,
            metadata=dict(self.metadata),
            config=config,
            stream_mode=stream_modes(
                self.stream_mode, ("values",) if streaming else BACKGROUND_MODES
            ),
            multitask_strategy=self.multitask_strategy,
            if_not_exists=self.if_not_exists,
            after_seconds=self.after_seconds,
            timeout_seconds=self.timeout_seconds,
            owner=owner,
            options=self.options(thread_id=thread_id),
            on_completion=self.on_completion,
            webhook=self.webhook,
        )


class RunList(Query):
    limit: Limit = DEFAULT_LIMIT
    offset: Offset = 0
    status: RunStatusName | None = None


class Feed(Query):
    limit: Limit = FEED_LIMIT


class JoinStream(Query):
    # "" is ignored: LangGraph's SDK sends an empty stream_mode when it was given none.
    stream_mode: list[StreamMode | Literal[""]] = Field(
        default_factory=list, description="repeat it for several; none: every event"
    )
    cancel_on_disconnect: Flag = Field(
        default=False, description="cancel the run if this client leaves"
    )

    def modes(self) -> list[str] | None:
        """The modes asked for, once each; None: every event."""
        return stream_modes([m for m in self.stream_mode if m], ()) or None


class Cancel(Query):
    wait: Flag = Field(
        default=False, description="answer once the run has ended (200), not at once (202)"
    )
    action: Literal["interrupt", "rollback"] = Field(
        default="interrupt", description="rollback also deletes the run"
    )


# -- threads ------------------------------------------------------------------


class ThreadCreate(Body):
    thread_id: ThreadId | None = Field(default=None, description="none: a new UUID")
    metadata: Metadata = Field(default_factory=dict)
    if_exists: IfExists = "raise"


class ThreadPatch(Body):
    metadata: Metadata = Field(default_factory=dict, description="merged into the thread's")


class ThreadCount(Body):
    metadata: Object = Field(default_factory=dict, description="every key must match")
    values: Object = Field(default_factory=dict, description="every key must match")
    status: ThreadStatusName | None = None


class ThreadSearch(ThreadCount):
    limit: Limit = DEFAULT_LIMIT
    offset: Offset = 0


class StateQuery(Query):
    subgraphs: Flag = Field(default=False, description="include the subgraphs' states")


class StateAt(Body):
    checkpoint: Checkpoint
    subgraphs: bool = False


class StateUpdate(Body):
    values: Any = None
    as_node: str | None = Field(
        default=None, description="the node that wrote them; __copy__: a fork"
    )
    checkpoint: Checkpoint = Field(
        default_factory=lambda: Checkpoint(), description="none: the newest"
    )
    checkpoint_id: str | None = Field(
        default=None, description="LangGraph's older field for the same"
    )


class NamedCheckpoint(Checkpoint):
    checkpoint_id: str


class HistoryQuery(Query):
    limit: Limit = DEFAULT_LIMIT
    before: NonEmpty | None = Field(default=None, description="a checkpoint id: older states only")


class HistorySearch(Body):
    limit: Limit = DEFAULT_LIMIT
    before: NonEmpty | NamedCheckpoint | None = Field(
        default=None, description="a checkpoint (or its id): older states only"
    )
    metadata: Object = Field(default_factory=dict, description="every key must match")
    checkpoint: Checkpoint = Field(
        default_factory=lambda: Checkpoint(), description="a namespace, or where to start"
    )


# -- assistants ---------------------------------------------------------------


class AssistantFields(Body):
    """What creating and changing an assistant share; each absent one stays as it is."""

    config: Object | None = None
    context: Object | None = None
    metadata: Metadata | None = None
    name: str | None = None
    description: str | None = None


class AssistantCreate(AssistantFields):
    graph_id: NonEmpty = Field(description="a registered graph's name")
    assistant_id: str | None = Field(
        default=None, description="none: a new UUID", json_schema_extra={"format": "uuid"}
    )
    if_exists: IfExists = "raise"


class AssistantPatch(AssistantFields):
    graph_id: str | None = None


class AssistantCount(Body):
    graph_id: str | None = None
    name: str = Field(default="", description="a part of the name, in any case")
    metadata: Object = Field(default_factory=dict, description="every key must match")


class AssistantSearch(AssistantCount):
    sort_by: SortKey = "created_at"
    sort_order: Literal["asc", "desc"] = "desc"
    select: list[AssistantField] = Field(default_factory=list, description="none: every field")
    limit: Limit = DEFAULT_LIMIT
    offset: Offset = 0


class AssistantVersions(Body):
    metadata: Object = Field(default_factory=dict, description="every key must match")
    limit: Limit = DEFAULT_LIMIT
    offset: Offset = 0


class AssistantLatest(Body):
    version: Annotated[int, Field(ge=1, le=MAX_INTEGER), WHOLE]


class GraphQuery(Query):
    xray: str = Field(
        default="false",
        pattern="^(true|false|True|False|[1-9][0-9]{0,3})$",
        description="true, false, or how many levels of subgraphs to draw",
    )

    def depth(self) -> bool | int:
        if self.xray.lower() in ("true", "false"):
            return self.xray.lower() == "true"
        return int(self.xray)


class SubgraphsQuery(Query):
    recurse: Flag = Field(default=False, description="the subgraphs' subgraphs too")


# -- the memory store ---------------------------------------------------------


def _no_number(value: Any) -> Any:
    """``False`` alone: 0 equals False in Python, not in JSON."""
    if not isinstance(value, bool):
        raise PydanticCustomError("false_only", "must be false")
    return value


class ItemPut(Body):
    namespace: Namespace
    key: NonEmpty
    value: Object
    index: Annotated[Literal[False], BeforeValidator(_no_number)] | list[str] | None = Field(
        default=None, description="accepted; runyard has no vector index"
    )
    ttl: Annotated[float, Field(gt=0, le=MAX_TTL_MINUTES, allow_inf_nan=False)] | None = Field(
        default=None, description="minutes from this put until the item expires; none: never"
    )


class ItemDelete(Body):
    namespace: Namespace
    key: NonEmpty


class ItemGet(Query):
    namespace: list[Annotated[str, Field(pattern=f"^{_LABEL}([.]{_LABEL})*$")]] = Field(
        min_length=1,
        description="the labels in order, joined by periods (as LangGraph's SDK sends them),"
        " in one parameter or several",
    )
    key: NonEmpty
    refresh_ttl: Flag = Field(default=False, description="accepted; a read never restarts a ttl")


class ItemSearch(Body):
    namespace_prefix: list[Label] = Field(default_factory=list)
    filter: Object | None = Field(
        default=None,
        description="values every match has; a field may compare: $eq $ne $gt $gte $lt $lte",
    )
    limit: Limit = DEFAULT_LIMIT
    offset: Offset = 0
    query: str | None = Field(default=None, description="accepted; without a vector index, ignored")
    refresh_ttl: bool | None = Field(
        default=None, description="accepted; a read never restarts a ttl"
    )


class NamespaceSearch(Body):
    prefix: list[Label] | None = Field(default=None, description="* matches any one label")
    suffix: list[Label] | None = None
    max_depth: Annotated[int, Field(ge=1), WHOLE] | None = None
    limit: Limit = NAMESPACES_LIMIT
    offset: Offset = 0
