"""Crons: create, read, search, count, update, delete; and the times each one fires.

A cron keeps the run it starts as its ``payload``: the fields of a
:class:`~runyard.model.RunRequest`, as validated when the cron was made, so
each time builds the same request (:func:`request_of`) with the cron's
metadata and its id in the run's metadata. A cron on a thread starts its
runs there; a thread-less one gives each run a new thread, deleted when the
run ends unless ``on_run_completed`` is ``keep`` (LangGraph's default).

Times come from the cron expression (croniter, the parser LangGraph's server
uses, so an expression means the same on both: five fields, or six with
seconds last) in the cron's time zone, UTC unless one is named. A cron to
anyone but its owner does not exist (:class:`NotFound`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from .assistants import Assistants
from .errors import BadRequest, Invalid, NotFound
from .model import JSON, Cron, MultitaskStrategy, RunRequest, json_size, new_id, now
from .store import Store
from .store.crons import CLAIM_KEY
from .store.crons import SORTABLE as SORTABLE  # what a search may sort by
from .threads import Threads

# What a thread-less cron's runs leave behind, unless told (LangGraph's default).
ON_RUN_COMPLETED = ("delete", "keep")
DEFAULT_ON_RUN_COMPLETED = "delete"
# The longest cron expression taken (croniter's own limit is far larger).
MAX_SCHEDULE = 256
# The request fields a cron does not keep: who asks, and where (the cron says both).
_NOT_KEPT = ("owner", "thread_id")


@dataclasses.dataclass(slots=True)
class CronSpec:
    """When a new cron fires, and what it tells its runs."""

    schedule: str
    timezone: str | None = None
    end_time: float | None = None
    enabled: bool = True
    on_run_completed: str | None = None  # thread-less crons only
    metadata: dict[str, JSON] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(slots=True)
class CronChange:
    """What a PATCH changes; None (and empty) leaves a field as it is."""

    schedule: str | None = None
    timezone: str | None = None
    end_time: float | None = None
    clear_end_time: bool = False
    enabled: bool | None = None
    on_run_completed: str | None = None
    metadata: dict[str, JSON] | None = None  # merged into the cron's, key by key
    request: dict[str, JSON] = dataclasses.field(default_factory=dict)  # RunRequest fields
    context: dict[str, JSON] | None = None  # the graph's context (kept under config)
    options: dict[str, JSON] = dataclasses.field(default_factory=dict)  # graph options

    def empty(self) -> bool:
        return self == CronChange()


def check_schedule(schedule: str) -> None:
    """Raise :class:`Invalid` unless ``schedule`` is a cron expression."""
    if len(schedule) > MAX_SCHEDULE or not croniter.is_valid(schedule):
        raise Invalid(
            "field 'schedule' must be a cron expression: minute hour day-of-month month"
            " day-of-week, and optionally seconds last (e.g. '*/5 * * * *')"
        )


def check_timezone(name: str) -> None:
    """Raise :class:`Invalid` unless ``name`` is an IANA time zone."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise Invalid("field 'timezone' must be an IANA time zone, e.g. 'Europe/Paris'") from None


def next_time(schedule: str, timezone: str | None, after: float) -> float:
    """The first time of ``schedule`` strictly after ``after`` (unix seconds)."""
    zone = ZoneInfo(timezone) if timezone else UTC
    found: datetime = croniter(schedule, datetime.fromtimestamp(after, zone)).get_next(datetime)
    return found.timestamp()


def next_run_at(cron: Cron, after: float) -> float | None:
    """The cron's next time after ``after``; None once it would be past ``end_time``."""
    at = next_time(cron.schedule, cron.timezone, after)
    return None if cron.end_time is not None and at > cron.end_time else at


def payload_of(request: RunRequest) -> dict[str, JSON]:
    """What a cron keeps of a validated request (the inverse of :func:`request_of`)."""
    kept = dataclasses.asdict(request)
    for name in _NOT_KEPT:
        del kept[name]
    kept["multitask_strategy"] = str(request.multitask_strategy)
    return kept


def request_of(cron: Cron, claim: str) -> RunRequest:
    """The run one of the cron's times starts; it carries the ``claim`` its row clears."""
    fields = {f.name for f in dataclasses.fields(RunRequest)}
    kept = {k: v for k, v in cron.payload.items() if k in fields and k not in _NOT_KEPT}
    request = RunRequest(**kept)
    request.multitask_strategy = MultitaskStrategy(request.multitask_strategy)
    request.owner = cron.owner
    request.thread_id = cron.thread_id
    request.metadata = {**request.metadata, **cron.metadata, "cron_id": cron.cron_id}
    request.options = {**request.options, CLAIM_KEY: claim}
    if cron.thread_id is None:
        request.on_completion = cron.on_run_completed or DEFAULT_ON_RUN_COMPLETED
    return request


class Crons:
    """The supervisor's cron operations (``supervisor.crons``)."""

    def __init__(
        self,
        store: Store,
        assistants: Assistants,
        threads: Threads,
        *,
        wake: Callable[[], None],
        check_webhook: Callable[[str], object],
    ) -> None:
        self._store = store
        self._assistants = assistants
        self._threads = threads
        self._wake = wake  # tells the scheduler that a cron's times changed
        self._check_webhook = check_webhook  # raises Invalid for a URL webhooks may not reach

    async def create(self, request: RunRequest, spec: CronSpec) -> Cron:
        """A new cron for ``request`` (on its thread, or thread-less); raises
        :class:`Invalid` (schedule, time zone) or :class:`NotFound` (assistant, thread)."""
        check_schedule(spec.schedule)
        if spec.timezone is not None:
            check_timezone(spec.timezone)
        if request.webhook is not None:
            self._check_webhook(request.webhook)
        await self._assistants.resolve(request.assistant_id, request.owner)
        on_completed = None
        if request.thread_id is not None:
            await self._threads.get(request.thread_id, owner=request.owner)
        else:
            on_completed = spec.on_run_completed or DEFAULT_ON_RUN_COMPLETED
        ts = now()
        cron = Cron(
            cron_id=new_id(),
            assistant_id=request.assistant_id,
            thread_id=request.thread_id,
            schedule=spec.schedule,
            timezone=spec.timezone,
            payload=payload_of(request),
            metadata=spec.metadata,
            created_at=ts,
            updated_at=ts,
            next_run_at=None,
            end_time=spec.end_time,
            enabled=spec.enabled,
            on_run_completed=on_completed,
            owner=request.owner,
        )
        cron.next_run_at = next_run_at(cron, ts)
        await self._store.put_cron(cron)
        self._wake()
        return cron

    async def get(self, cron_id: str, *, owner: str = "") -> Cron:
        cron = await self._store.get_cron(cron_id)
        if cron is None or cron.owner != owner:
            raise NotFound(f"cron {cron_id} not found")
        return cron

    async def search(
        self,
        *,
        owner: str,
        assistant_id: str | None = None,
        thread_id: str | None = None,
        enabled: bool | None = None,
        metadata: dict[str, JSON] | None = None,
        sort_by: str = "created_at",
        descending: bool = True,
        limit: int = 10,
        offset: int = 0,
    ) -> list[Cron]:
        return await self._store.search_crons(
            owner=owner,
            assistant_id=assistant_id,
            thread_id=thread_id,
            enabled=enabled,
            metadata=metadata or {},
            sort_by=sort_by,
            descending=descending,
            limit=limit,
            offset=offset,
        )

    async def count(
        self,
        *,
        owner: str,
        assistant_id: str | None = None,
        thread_id: str | None = None,
        metadata: dict[str, JSON] | None = None,
    ) -> int:
        return await self._store.count_crons(
            owner=owner, assistant_id=assistant_id, thread_id=thread_id, metadata=metadata or {}
        )

    async def update(
        self,
        cron_id: str,
        change: CronChange,
        *,
        owner: str = "",
        max_metadata: int | None = None,
    ) -> Cron:
        """Apply ``change`` in one transaction; a new schedule, time zone, end time or a
        re-enabled cron counts its next time from now; the merged metadata may take up
        to ``max_metadata`` bytes. Raises :class:`BadRequest` for an empty change,
        :class:`Invalid`, :class:`NotFound`."""
        if change.empty():
            raise BadRequest("the request body names nothing to update")
        if change.schedule is not None:
            check_schedule(change.schedule)
        if change.timezone is not None:
            check_timezone(change.timezone)
        webhook = change.request.get("webhook")
        if isinstance(webhook, str):
            self._check_webhook(webhook)
        changed = await self._store.change_cron(
            cron_id, owner, lambda c: _changed(c, change, max_metadata)
        )
        if changed is None:
            raise NotFound(f"cron {cron_id} not found")
        self._wake()
        return changed

    async def delete(self, cron_id: str, *, owner: str = "") -> None:
        if not await self._store.delete_cron(cron_id, owner):
            raise NotFound(f"cron {cron_id} not found")


def _changed(cron: Cron, change: CronChange, max_metadata: int | None = None) -> Cron:
    """``cron`` with ``change`` applied (in the store's transaction: no I/O here)."""
    ts = now()
    new = dataclasses.replace(cron, updated_at=ts)
    if change.schedule is not None:
        new.schedule = change.schedule
    if change.timezone is not None:
        new.timezone = change.timezone
    if change.clear_end_time:
        new.end_time = None
    elif change.end_time is not None:
        new.end_time = change.end_time
    if change.enabled is not None:
        new.enabled = change.enabled
    if change.on_run_completed is not None and cron.thread_id is None:
        new.on_run_completed = change.on_run_completed
    if change.metadata is not None:
        new.metadata = {**cron.metadata, **change.metadata}
        if max_metadata is not None and json_size(new.metadata) > max_metadata:
            raise Invalid(f"the cron's metadata would be larger than {max_metadata} bytes")
    if change.request or change.options or change.context is not None:
        options = {**cron.payload.get("options", {}), **change.options}
        new.payload = {**cron.payload, **change.request, "options": options}
        if change.context is not None:
            new.payload["config"] = {**new.payload.get("config", {}), "context": change.context}
    timing = (change.schedule, change.timezone, change.end_time)
    if any(v is not None for v in timing) or change.clear_end_time or change.enabled:
        new.next_run_at = next_run_at(new, ts)
    return new
