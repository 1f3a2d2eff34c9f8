"""Crons: create (on a thread, or thread-less), read, search, count, update, delete.

The routes and shapes are LangGraph's (``client.crons.*`` in both SDKs); a
cron answers as the reference server's does, its run's fields in ``payload``.
The schedule, time zone and webhook are checked by the engine
(:mod:`runyard.crons`), which names the field when it refuses one. The
bodies are declared here, beside the run body they extend.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BeforeValidator, ConfigDict, Field, WithJsonSchema, model_validator
from pydantic_core import PydanticCustomError
from quart import Blueprint, Response, jsonify

from ..crons import CronChange, CronSpec
from ..errors import BadRequest, Invalid, NotFound
from ..model import JSON, Cron
from ..wire import iso
from .bodies import RunCreate, WebhookUrl
from .context import owner, settings, supervisor
from .graph_options import Nodes
from .routes import NO_BODY, Routes
from .schema import Body, Limit, Metadata, Object, Offset, StreamModes, null_allowed
from .shapes import Shape, Timestamp

if TYPE_CHECKING:
    SortKey = str
    CronField = str
else:  # the choices live with the code that uses them; pydantic reads them here
    from ..crons import SORTABLE

    SortKey = Literal[SORTABLE]
    CronField = Literal[
        "cron_id", "assistant_id", "thread_id", "end_time", "schedule", "timezone",
        "created_at", "updated_at", "user_id", "payload", "next_run_date", "metadata",
        "on_run_completed", "enabled",
    ]  # fmt: skip

crons = Blueprint("crons", __name__)
route = Routes(crons)


def _instant(value: Any) -> Any:
    """An RFC 3339 date and time (UTC when it names no offset) as unix seconds."""
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            raise PydanticCustomError(
                "instant", "must be an RFC 3339 date and time, e.g. 2027-01-31T09:00:00+00:00"
            ) from None
        return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()
    return value


Instant = Annotated[
    float,
    BeforeValidator(_instant),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]
Schedule = Annotated[str, Field(description="a cron expression: 5 fields, or 6 with seconds last")]
TimeZone = Annotated[str, Field(description="an IANA time zone; none: UTC")]
OnRunCompleted = Annotated[
    Literal["delete", "keep"],
    Field(description="a thread-less cron's runs: delete each one's thread when it ends, or keep"),
]


class CronCreate(RunCreate):
    """A cron: the run it starts at each time, and when."""

    schedule: Schedule
    timezone: TimeZone | None = None
    end_time: Instant | None = Field(None, description="no run after this time")
    enabled: bool = True
    on_run_completed: OnRunCompleted | None = None


def _at_least_one_field(schema: dict[str, Any]) -> None:
    """Body's document rule (optional fields may be null), and: some field named."""
    null_allowed(schema)
    schema["minProperties"] = 1


class CronPatch(Body):
    """What changes; a field left out stays. ``end_time: null`` removes the end time.

    A body that names nothing to change is refused as invalid (422).
    """

    model_config = ConfigDict(json_schema_extra=_at_least_one_field)

    schedule: Schedule | None = None
    timezone: TimeZone | None = None
    end_time: Instant | None = None
    clear_end_time: bool = Field(False, description="the same as end_time: null")
    enabled: bool | None = None
    on_run_completed: OnRunCompleted | None = None
    metadata: Metadata | None = Field(None, description="merged into the cron's")
    input: Any = None
    config: Object | None = None
    context: Object | None = None
    webhook: WebhookUrl | None = None
    stream_mode: StreamModes | None = None
    interrupt_before: Nodes | None = None
    interrupt_after: Nodes | None = None
    stream_subgraphs: bool | None = None
    durability: Literal["sync", "async", "exit"] | None = None

    @model_validator(mode="before")
    @classmethod
    def _drop_nulls(cls, data: Any) -> Any:
        """As :class:`Body`, but a null ``end_time`` says: no end time any more."""
        if not isinstance(data, dict):
            return data
        kept = {k: v for k, v in data.items() if v is not None}
        if "end_time" in data and data["end_time"] is None:
            kept["clear_end_time"] = True
        return kept

    @model_validator(mode="after")
    def _names_something(self) -> CronPatch:
        if self.change().empty():
            raise PydanticCustomError("empty", "must name at least one field to change")
        return self

    def change(self) -> CronChange:
        request: dict[str, JSON] = {}
        if self.input is not None:
            request["input"] = self.input
        if self.config is not None:
            request["config"] = dict(self.config)
        if self.webhook is not None:
            request["webhook"] = self.webhook
        if self.stream_mode is not None:
            request["stream_mode"] = list(dict.fromkeys(self.stream_mode))
        options = self.model_dump(
            include={"interrupt_before", "interrupt_after", "stream_subgraphs", "durability"},
            exclude_none=True,
        )
        return CronChange(
            schedule=self.schedule,
            timezone=self.timezone,
            end_time=self.end_time,
            clear_end_time=self.clear_end_time,
            enabled=self.enabled,
            on_run_completed=self.on_run_completed,
            metadata=None if self.metadata is None else dict(self.metadata),
            request=request,
            context=None if self.context is None else dict(self.context),
            options=options,
        )


class CronCount(Body):
    assistant_id: str | None = None
    thread_id: str | None = None
    metadata: Object = Field(default_factory=dict, description="every key must match")


class CronSearch(CronCount):
    enabled: bool | None = None
    limit: Limit = 10
    offset: Offset = 0
    sort_by: SortKey = "created_at"
    sort_order: Literal["asc", "desc"] = "desc"
    select: list[CronField] | None = Field(None, description="only these fields of each cron")


class CronShape(Shape):
    cron_id: str
    assistant_id: str
    thread_id: str | None
    on_run_completed: Literal["delete", "keep"] | None
    end_time: Timestamp | None
    schedule: str
    timezone: str | None = Field(description="an IANA time zone; null: UTC")
    created_at: Timestamp
    updated_at: Timestamp
    payload: Object = Field(description="the run each time starts")
    user_id: str | None = Field(description="the owner (null without tokens)")
    next_run_date: Timestamp | None = Field(description="null: no time left before end_time")
    metadata: Object
    enabled: bool


def _optional_fields(schema: dict[str, Any]) -> None:
    schema.pop("required", None)


class SelectedCron(CronShape):
    """A cron found by a search: only the ``select`` fields when some were named."""

    model_config = ConfigDict(json_schema_extra=_optional_fields)


def cron_json(cron: Cron, select: list[str] | None = None) -> dict[str, JSON]:
    whole: dict[str, JSON] = {
        "cron_id": cron.cron_id,
        "assistant_id": cron.assistant_id,
        "thread_id": cron.thread_id,
        "on_run_completed": cron.on_run_completed,
        "end_time": None if cron.end_time is None else iso(cron.end_time),
        "schedule": cron.schedule,
        "timezone": cron.timezone,
        "created_at": iso(cron.created_at),
        "updated_at": iso(cron.updated_at),
        "payload": cron.payload,
        "user_id": cron.owner or None,
        "next_run_date": None if cron.next_run_at is None else iso(cron.next_run_at),
        "metadata": cron.metadata,
        "enabled": cron.enabled,
    }
    return {k: whole[k] for k in select} if select else whole


@route(
    "/threads/<thread_id>/runs/crons",
    "POST",
    summary="Create a cron that starts runs on a thread",
    body=CronCreate,
    answers={200: CronShape},
    raises=(Invalid, NotFound),
)
@route(
    "/runs/crons",
    "POST",
    summary="Create a cron whose runs each get a new thread",
    defaults={"thread_id": None},
    body=CronCreate,
    answers={200: CronShape},
    raises=(Invalid, NotFound),
)
async def create(thread_id: str | None, body: CronCreate) -> Response:
    request = body.run_request(thread_id=thread_id, owner=owner(), streaming=False)
    spec = CronSpec(
        schedule=body.schedule,
        timezone=body.timezone,
        end_time=body.end_time,
        enabled=body.enabled,
        on_run_completed=body.on_run_completed,
        metadata=request.metadata,
    )
    request.metadata = {}  # the cron's metadata: each run gets it (with the cron's id)
    return jsonify(cron_json(await supervisor().crons.create(request, spec)))


@route(
    "/runs/crons/search",
    "POST",
    summary="Search crons",
    body=CronSearch,
    answers={200: list[SelectedCron]},
)
async def search(body: CronSearch) -> Response:
    found = await supervisor().crons.search(
        owner=owner(),
        assistant_id=body.assistant_id,
        thread_id=body.thread_id,
        enabled=body.enabled,
        metadata=dict(body.metadata),
        sort_by=body.sort_by,
        descending=body.sort_order == "desc",
        limit=body.limit,
        offset=body.offset,
    )
    select = list(dict.fromkeys(body.select)) if body.select else None
    return jsonify([cron_json(c, select) for c in found])


@route("/runs/crons/count", "POST", summary="Count crons", body=CronCount, answers={200: int})
async def count(body: CronCount) -> Response:
    found = await supervisor().crons.count(
        owner=owner(),
        assistant_id=body.assistant_id,
        thread_id=body.thread_id,
        metadata=dict(body.metadata),
    )
    return jsonify(found)


@route(
    "/runs/crons/<cron_id>",
    "GET",
    summary="Read a cron",
    answers={200: CronShape},
    raises=(NotFound,),
)
async def get(cron_id: str) -> Response:
    return jsonify(cron_json(await supervisor().crons.get(cron_id, owner=owner())))


@route(
    "/runs/crons/<cron_id>",
    "PATCH",
    summary="Update a cron",
    body=CronPatch,
    answers={200: CronShape},
    raises=(BadRequest, Invalid, NotFound),
)
async def update(cron_id: str, body: CronPatch) -> Response:
    limit = settings().max_metadata_bytes
    changed = await supervisor().crons.update(
        cron_id, body.change(), owner=owner(), max_metadata=limit
    )
    return jsonify(cron_json(changed))


@route(
    "/runs/crons/<cron_id>",
    "DELETE",
    summary="Delete a cron (its runs stay)",
    answers={204: NO_BODY},
    raises=(NotFound,),
)
async def delete(cron_id: str) -> Response:
    await supervisor().crons.delete(cron_id, owner=owner())
    return Response(b"", status=204)
