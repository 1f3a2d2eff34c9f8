"""What runyard needs from a database: the :class:`Store` protocol and what it writes.

Pure data and one ``Protocol``; nothing here does I/O. The supervisor and the
event log talk to a :class:`Store` and nothing else does, so a PostgreSQL
store can be added beside :class:`~runyard.store.SQLiteStore` without
touching either of them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from ..model import (
    JSON,
    CancelReason,
    Delivery,
    ErrorInfo,
    Event,
    Run,
    RunStatus,
    Thread,
    ThreadStatus,
)


@dataclasses.dataclass(slots=True)
class FinalState:
    """Everything the end of one run writes, in one transaction."""

    run_id: str
    thread_id: str
    status: RunStatus
    cancel_reason: CancelReason | None
    error: ErrorInfo | None
    output: JSON
    updated_at: float
    events: list[Event]  # the run's last events, ``end`` included
    thread_status: ThreadStatus | None  # None: leave the thread as it is
    delete: bool = False  # rollback: remove the run, its events and checkpoints instead
    # A graph run's thread state; None: on success the thread's values are the output.
    thread_state: ThreadState | None = None
    # The run's webhook, put in the outbox with its final state (runyard.webhooks).
    webhook: Delivery | None = None


@dataclasses.dataclass(slots=True)
class ThreadState:
    """A graph thread's state after a run: its values and its pending interrupts."""

    values: JSON
    interrupts: dict[str, JSON]  # {task_id: [{"id", "value"}]}; empty: nothing pending
    waiting: bool = False  # nodes are due (stopped at interrupt_before/after, say)


@dataclasses.dataclass(slots=True)
class BlobRow:
    """One channel's value at one version, as the checkpoint serializer encoded it."""

    thread_id: str
    checkpoint_ns: str
    channel: str
    version: str
    type: str  # the serializer's tag; "empty" when the channel had no value
    blob: bytes | None


@dataclasses.dataclass(slots=True)
class CheckpointRow:
    """One LangGraph checkpoint, without its channel values (those are :class:`BlobRow`)."""

    thread_id: str
    checkpoint_ns: str
    checkpoint_id: str  # sorts by time (uuid6)
    parent_checkpoint_id: str | None
    run_id: str | None  # the run that wrote it, if any (rollback deletes them)
    type: str
    checkpoint: bytes
    metadata: dict[str, JSON]
    created_at: float
    blobs: list[BlobRow] = dataclasses.field(default_factory=list)  # written with it


@dataclasses.dataclass(slots=True)
class WriteRow:
    """A task's pending write on a checkpoint (interrupts and resumes live here)."""

    thread_id: str
    checkpoint_ns: str
    checkpoint_id: str
    task_id: str
    idx: int
    channel: str
    type: str
    blob: bytes | None
    task_path: str = ""
    replace: bool = False  # an error, interrupt or resume write replaces an older one


@dataclasses.dataclass(slots=True)
class Batch:
    """What one transaction writes, applied in this order."""

    created: list[tuple[Run, Thread | None]] = dataclasses.field(default_factory=list)
    """New pending runs, each with the new thread to insert first (or None), the
    thread then marked busy."""
    events: list[Event] = dataclasses.field(default_factory=list)
    running: list[tuple[str, float]] = dataclasses.field(default_factory=list)
    """(run id, time) of runs that are now running."""
    checkpoints: list[CheckpointRow] = dataclasses.field(default_factory=list)
    """Graph checkpoints (with their new channel blobs), behind the events before them."""
    writes: list[WriteRow] = dataclasses.field(default_factory=list)
    """Tasks' pending writes; a write with the same key replaces the older one."""
    finals: list[FinalState] = dataclasses.field(default_factory=list)
    again: bool = False
    """Written again after the answer to a first try was lost (the database went
    away): it may have committed, so a run already there is left as it is rather
    than refused. Everything else a batch writes is keyed and changes nothing the
    second time."""


class RunStore(Protocol):
    """Threads, runs and their events: what the engine needs from a database."""

    async def aclose(self) -> None: ...

    async def put_thread(self, thread: Thread) -> None: ...
    async def get_thread(self, thread_id: str) -> Thread | None: ...
    async def thread_owner(self, thread_id: str) -> str | None:
        """Who owns the thread (None: no such thread), read without its values."""

    async def search_threads(
        self,
        *,
        owner: str,
        metadata: dict[str, JSON],
        status: str | None,
        limit: int,
        offset: int,
        values: dict[str, JSON] | None = None,
    ) -> list[Thread]:
        """The owner's threads, newest first, whose metadata and values hold every pair given."""

    async def count_threads(
        self, *, owner: str, metadata: dict[str, JSON], values: dict[str, JSON], status: str | None
    ) -> int:
        """How many threads :meth:`search_threads` would find with no limit."""

    async def patch_thread(
        self, thread_id: str, metadata: dict[str, JSON], updated_at: float
    ) -> Thread | None:
        """Merge ``metadata`` into the thread's, key by key, in one transaction; the new row."""

    async def set_thread_state(
        self, thread_id: str, state: ThreadState, status: ThreadStatus, updated_at: float
    ) -> None:
        """A graph thread's values, interrupts and status after its state was changed."""

    async def delete_thread(self, thread_id: str) -> None: ...

    async def get_run(self, run_id: str) -> Run | None: ...
    async def list_runs(
        self,
        thread_id: str | None,
        *,
        status: str | None,
        limit: int,
        offset: int,
        owner: str | None = None,
    ) -> list[Run]:
        """Runs newest first: of one thread, or of every thread when ``thread_id`` is None."""

    async def unfinished_runs(self) -> list[Run]: ...
    async def delete_run(self, run_id: str) -> None: ...
    async def new_attempt(self, run_id: str, attempt: int, at: float) -> None:
        """Count another attempt of a run that resumes after a crash."""

    async def purge(self, before: float, *, batch: int = 200) -> int: ...

    async def read_events(self, run_id: str, after_seq: int, limit: int) -> list[Event]: ...
    async def last_seq(self, run_id: str) -> int: ...
    async def commit(self, batch: Batch) -> None:
        """Write the batch in one transaction (all of it or, raising, none)."""


T = TypeVar("T")

# Streams a query's rows and stops the read when left: (connection, query, args).
Scan = Callable[[Any, str, list[Any]], AbstractContextManager[Iterable[tuple[Any, ...]]]]
# A clause picking the rows whose column holds one of some values, and its arguments.
OneOf = Callable[[str, Sequence[str]], tuple[str, Any]]


def page_of(found: Iterable[T], limit: int, offset: int) -> list[T]:
    """The ``limit`` items of ``found`` after the first ``offset``, read no further."""
    page: list[T] = []
    for i, item in enumerate(found):
        if i >= offset:
            page.append(item)
            if len(page) >= limit:
                break
    return page


class OnSQL:
    """A part of a store written once for SQLite and PostgreSQL: the store's connection
    class (first among its bases) brings ``_read`` and ``_write``; its statements come
    from a dialect object of the part's own."""

    if TYPE_CHECKING:

        async def _read(self, fn: Callable[[Any], T]) -> T: ...

        async def _write(self, fn: Callable[[Any], T]) -> T: ...
