"""The nouns of runyard as plain data: statuses, reasons, runs, threads, events.

Nothing here does I/O. The store persists these, the supervisor changes them,
the HTTP layer renders them (``http/render.py``).
"""

from __future__ import annotations

import dataclasses
import enum
import json
import math
import time
import uuid
from typing import Any

import orjson

JSON = Any  # A value that json.dumps accepts.


class RunStatus(enum.StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCESS = "success"
    ERROR = "error"
    TIMEOUT = "timeout"
    INTERRUPTED = "interrupted"

    @property
    def terminal(self) -> bool:
        return self not in (RunStatus.PENDING, RunStatus.RUNNING)


class CancelReason(enum.StrEnum):
    USER = "user"
    DISCONNECT = "disconnect"
    INTERRUPT = "interrupt"  # a newer run on the thread took over
    ROLLBACK = "rollback"
    SHUTDOWN = "shutdown"
    RESTART = "restart"  # the process that owned the run died
    TIMEOUT = "timeout"


class ThreadStatus(enum.StrEnum):
    IDLE = "idle"
    BUSY = "busy"
    INTERRUPTED = "interrupted"
    ERROR = "error"


class MultitaskStrategy(enum.StrEnum):
    REJECT = "reject"
    INTERRUPT = "interrupt"
    ROLLBACK = "rollback"
    ENQUEUE = "enqueue"


def thread_status_after(status: RunStatus, *, pending_interrupts: bool = False) -> ThreadStatus:
    """The status a thread takes when its last run ends with ``status``.

    ``interrupted`` means a graph waits on an interrupt; a cancelled run
    leaves its thread ``idle`` (the run's own status tells the cancel).
    """
    if pending_interrupts:
        return ThreadStatus.INTERRUPTED
    if status in (RunStatus.SUCCESS, RunStatus.INTERRUPTED):
        return ThreadStatus.IDLE
    if status.terminal:
        return ThreadStatus.ERROR
    return ThreadStatus.BUSY


def new_id() -> str:
    return str(uuid.uuid4())


def now() -> float:
    return time.time()


@dataclasses.dataclass(frozen=True, slots=True)
class ErrorInfo:
    """A client-safe description of a failure: a type name and a message we wrote."""

    error: str
    message: str

    def to_json(self) -> dict[str, str]:
        return {"error": self.error, "message": self.message}


@dataclasses.dataclass(slots=True)
class Run:
    run_id: str
    thread_id: str
    assistant_id: str
    status: RunStatus
    created_at: float
    updated_at: float
    metadata: dict[str, JSON] = dataclasses.field(default_factory=dict)
    kwargs: dict[str, JSON] = dataclasses.field(default_factory=dict)
    multitask_strategy: MultitaskStrategy = MultitaskStrategy.ENQUEUE
    cancel_reason: CancelReason | None = None
    error: ErrorInfo | None = None
    output: JSON = None
    owner: str = ""
    attempt: int = 1

    @property
    def graph_id(self) -> str:
        """The registered agent the run executes (its assistant may be a configured one)."""
        return str(self.kwargs.get("graph_id", self.assistant_id))


# The fields of a run request that only a LangGraph graph reads (kept in the run's kwargs).
GRAPH_OPTIONS = (
    "command",
    "checkpoint",
    "interrupt_before",
    "interrupt_after",
    "stream_subgraphs",
    "durability",
    "resume_on_restart",
)


@dataclasses.dataclass(slots=True)
class RunRequest:
    """What a client asks for when it starts a run (already validated)."""

    assistant_id: str
    input: JSON = None
    thread_id: str | None = None  # None: a new thread just for this run
    metadata: dict[str, JSON] = dataclasses.field(default_factory=dict)
    config: dict[str, JSON] = dataclasses.field(default_factory=dict)
    stream_mode: list[str] = dataclasses.field(default_factory=lambda: ["values"])
    multitask_strategy: MultitaskStrategy = MultitaskStrategy.ENQUEUE
    if_not_exists: str = "reject"  # or "create"
    after_seconds: float = 0.0
    timeout_seconds: float | None = None
    owner: str = ""
    # LangGraph's options for a graph run (command, checkpoint, interrupt_before, ...).
    options: dict[str, JSON] = dataclasses.field(default_factory=dict)
    on_completion: str = "keep"  # "delete": a thread-less run's thread goes when it ends
    webhook: str | None = None  # POSTed the run's final state (runyard.webhooks)

    def kwargs(self) -> dict[str, JSON]:
        """What a run row keeps of the request, enough to start it again."""
        kept: dict[str, JSON] = {
            "input": self.input,
            "config": self.config,
            "stream_mode": self.stream_mode,
            "after_seconds": self.after_seconds,
            "timeout_seconds": self.timeout_seconds,
            "on_completion": self.on_completion,
            **self.options,
        }
        if self.webhook is not None:
            kept["webhook"] = self.webhook
        return kept

    @classmethod
    def of(cls, run: Run) -> RunRequest:
        """The request a stored run was made from (the inverse of :meth:`kwargs`)."""
        kw = run.kwargs
        return cls(
            assistant_id=run.assistant_id,
            input=kw.get("input"),
            thread_id=run.thread_id,
            metadata=run.metadata,
            config=kw.get("config") or {},
            stream_mode=kw.get("stream_mode") or ["values"],
            multitask_strategy=run.multitask_strategy,
            after_seconds=float(kw.get("after_seconds") or 0.0),
            timeout_seconds=kw.get("timeout_seconds"),
            owner=run.owner,
            options={k: v for k, v in kw.items() if k in GRAPH_OPTIONS},
            on_completion=str(kw.get("on_completion") or "keep"),
            webhook=kw.get("webhook"),
        )


@dataclasses.dataclass(slots=True)
class Thread:
    thread_id: str
    created_at: float
    updated_at: float
    metadata: dict[str, JSON] = dataclasses.field(default_factory=dict)
    status: ThreadStatus = ThreadStatus.IDLE
    values: JSON = None
    owner: str = ""
    # Pending interrupts of a graph's state, by task id: {task_id: [{"id", "value"}]}.
    interrupts: dict[str, JSON] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True, slots=True)
class Event:
    """One entry of a run's log. ``frame`` is the SSE encoding, built once."""

    run_id: str
    seq: int
    event: str
    data: str  # JSON text
    frame: bytes

    @classmethod
    def make(cls, run_id: str, seq: int, event: str, data: JSON) -> Event:
        return cls.from_text(run_id, seq, event, dumps(data))

    @classmethod
    def from_text(cls, run_id: str, seq: int, event: str, data: str) -> Event:
        frame = f"event: {event}\ndata: {data}\nid: {seq}\n\n".encode()
        return cls(run_id, seq, event, data, frame)

    def value(self) -> JSON:
        return json.loads(self.data)


# orjson writes what the standard library would, five to ten times faster; these make
# it agree on non-string keys (``1`` becomes ``"1"``) and leave datetimes and
# dataclasses to ``str``, as ``json.dumps(default=str)`` does.
_ORJSON = (
    orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
)


def json_size(value: JSON) -> int:
    """How long ``value`` is as compact JSON (non-ASCII escaped): what metadata limits count."""
    return len(json.dumps(value, separators=(",", ":")))


def dumps(value: JSON) -> str:
    """Compact JSON with no raw newlines, so a value fits one SSE ``data:`` line.

    NaN and infinities (which Python writes and JSON has not) become ``null``.
    What orjson refuses (an integer past 64 bits, a lone surrogate) the
    standard library writes, as ASCII: a lone surrogate, which UTF-8 cannot
    carry, becomes its ``\\ud800`` escape.
    """
    try:
        return orjson.dumps(value, default=str, option=_ORJSON).decode()
    except TypeError:  # orjson.JSONEncodeError
        pass
    try:
        return json.dumps(value, separators=(",", ":"), default=str, allow_nan=False)
    except ValueError:
        return json.dumps(_finite(value), separators=(",", ":"), default=str)


def _finite(value: JSON) -> JSON:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


@dataclasses.dataclass(slots=True)
class Assistant:
    """A graph (or agent) with its configuration; ``version`` counts its changes."""

    assistant_id: str
    graph_id: str
    created_at: float
    updated_at: float
    name: str = ""
    description: str | None = None
    config: dict[str, JSON] = dataclasses.field(default_factory=dict)
    context: dict[str, JSON] = dataclasses.field(default_factory=dict)
    metadata: dict[str, JSON] = dataclasses.field(default_factory=dict)
    version: int = 1
    owner: str = ""


# What a label of an item's namespace may not hold: a period (LangGraph's GET joins
# labels with them), the unit separator or NUL (the store joins labels with those).
LABEL_FORBIDDEN = (".", "\x1f", "\x00")
# A hundred years: a longer time to live for an item is a mistake.
MAX_TTL_MINUTES = 100 * 366 * 24 * 60


@dataclasses.dataclass(slots=True)
class Item:
    """One document of the long-term memory store, under a namespace path."""

    namespace: tuple[str, ...]
    key: str
    value: dict[str, JSON]
    created_at: float
    updated_at: float
    owner: str = ""
    expires_at: float | None = None


@dataclasses.dataclass(slots=True)
class Cron:
    """A schedule that starts an ordinary run at each of its times (LangGraph's cron)."""

    cron_id: str
    assistant_id: str
    thread_id: str | None  # None: each run gets a thread of its own
    schedule: str  # a cron expression: 5 fields, or 6 with seconds last
    timezone: str | None  # an IANA name; None: UTC
    payload: dict[str, JSON]  # the run each time starts (runyard.crons.request_of)
    metadata: dict[str, JSON]
    created_at: float
    updated_at: float
    next_run_at: float | None  # the next time it fires; None: no time is left before end_time
    end_time: float | None = None
    enabled: bool = True
    on_run_completed: str | None = None  # thread-less: "delete" (the default) or "keep"
    owner: str = ""
    # A time claimed whose run is not written yet: its token (the run carries it) and when.
    claim: str | None = None
    claimed_at: float | None = None


class DeliveryState(enum.StrEnum):
    PENDING = "pending"  # an attempt is due, or under way
    DELIVERED = "delivered"  # the receiver answered 2xx
    FAILED = "failed"  # every attempt failed until the retry time ran out
    REFUSED = "refused"  # the URL resolves to an address webhooks may not reach


@dataclasses.dataclass(slots=True)
class Delivery:
    """A run's webhook: its final state, to be POSTed to ``url``, and how that went so far."""

    run_id: str
    thread_id: str
    owner: str
    url: str
    body: dict[str, JSON]  # what the receiver gets (``webhook_sent_at`` is added at each attempt)
    created_at: float
    next_attempt_at: float  # when the next attempt is due; while one is under way, its lease
    updated_at: float
    attempts: int = 0
    state: DeliveryState = DeliveryState.PENDING


@dataclasses.dataclass(slots=True)
class DeliveryAttempt:
    """One POST of a webhook, as it went."""

    run_id: str
    attempt: int  # from 1
    at: float
    # "delivered"; "rejected" (not 2xx), "timeout", "unreachable", "error": tried again;
    # "refused": an address webhooks may not reach.
    outcome: str
    status_code: int | None
    seconds: float
