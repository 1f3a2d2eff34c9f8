"""LangGraph's checkpoint saver, durable in runyard's own store.

:class:`RunyardSaver` is a ``BaseCheckpointSaver``. Graphs call it on the
graph loop (:mod:`runyard.graph_loop`, a plain asyncio loop in a thread of
its own); reads cross to trio, where the :class:`~runyard.store.Store`
answers, and writes go through the group-commit writer, so a checkpoint
commits in the same transaction as the run's events queued before it, or a
later one.

Inside a run the order needs one more step. LangGraph saves a step's
checkpoint in the background while the step's stream output (``values``,
``updates``) may still wait in its queue, not yet logged by runyard; a
checkpoint written at once could then commit before the events that led to
it. So while a run executes, its :class:`CheckpointGate` holds each
checkpoint until the run's adapter has logged every chunk the graph streamed
before it (it knows: the graph streams a ``checkpoints`` chunk right after),
and at the end of the run releases what is left. A checkpoint is therefore
never committed without its events, and an event a client has seen is never
ahead of the checkpoint that holds its state. Outside a run (a state update
through the API) a checkpoint is committed before ``aput`` returns.

The gate is also the run's one way out to trio: its events and checkpoints
are posted there in order (:meth:`GraphLoop.post`), so a step costs the
graph no crossing of its own unless it must wait (a full writer, a
checkpoint that has not been handed over).

Cancellation: a cancelled call leaves what was queued queued; the writer
commits it or fails it as a unit.
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Sequence
from typing import Any, Protocol

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    WRITES_IDX_MAP,
    BaseCheckpointSaver,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    get_checkpoint_id,
    get_serializable_checkpoint_metadata,
)
from langgraph.checkpoint.serde.types import ERROR

from .commit import CommitWriter
from .errors import StoreError
from .graph_loop import GraphLoop
from .graph_values import jsonable
from .model import JSON, now
from .store import BlobRow, CheckpointRow, Store, WriteRow

log = logging.getLogger("runyard.checkpointer")

_EMPTY = "empty"  # the type tag of a channel that has no value at that version

# How long a run waits for LangGraph to hand over a checkpoint it announced.
HANDOVER_WAIT = 5.0

_Key = tuple[str, str]  # (checkpoint_ns, checkpoint_id)


class RunSink(Protocol):
    """Where a run's events go (the runner's sink): encoded on any side, logged on trio."""

    def encode(self, event: str, data: JSON) -> str:
        """The event's JSON text, checked against the limits (raises LimitExceeded)."""

    def append_text(self, event: str, text: str) -> None:
        """Log an encoded event now (on trio)."""

    @property
    def full(self) -> bool: ...

    async def wait_for_room(self) -> None: ...


class CheckpointGate:
    """A graph run's events and checkpoints, committed together, behind what came before.

    Everything here but the ``_on_trio`` methods runs on the graph loop. The
    saver calls :meth:`hold` (and :meth:`hold_writes`); the run's adapter
    calls :meth:`log` for events, :meth:`hold_event` for the graph's state
    events (root ``values`` and ``updates``), :meth:`commit` when the graph
    streams the ``checkpoints`` chunk of a root checkpoint, :meth:`release`
    for a subgraph's, and :meth:`release_all` at the end. :meth:`commit`
    posts the held state events and the checkpoint right behind them as one
    unit the writer never splits: a checkpoint commits with the events of its
    step, after every event before them.
    """

    def __init__(
        self, thread_id: str, loop: GraphLoop, sink: RunSink, writer: CommitWriter, store: Store
    ) -> None:
        self.thread_id = thread_id
        self._loop = loop
        self._sink = sink
        self._writer = writer
        self._store = store
        self._held: dict[_Key, CheckpointRow] = {}
        self._arrived: dict[_Key, asyncio.Event] = {}
        self._writes: dict[_Key, list[WriteRow]] = {}
        self._events: list[tuple[str, str]] = []  # held state events, encoded
        self._released: set[_Key] = set()
        # Set on trio: the writer's op of the last checkpoint queued; a failure to queue.
        self._last: Any = None
        self._error: StoreError | None = None
        # The checkpoint the run starts from, read ahead on trio (RunyardSaver.read_ahead).
        self._ahead: tuple[_Where, asyncio.Future[list[_Loaded]]] | None = None

    def keep_ahead(self, where: _Where, read: asyncio.Future[list[_Loaded]]) -> None:
        """Keep the read of ``where``'s checkpoint started on trio, for :meth:`take_ahead`."""
        self._ahead = (where, read)

    def take_ahead(self, where: _Where) -> asyncio.Future[list[_Loaded]] | None:
        """The read ahead of ``where``'s checkpoint, once; None if it was not read ahead."""
        if self._ahead is None or self._ahead[0] != where:
            return None
        future = self._ahead[1]
        self._ahead = None
        return future

    # -- events -----------------------------------------------------------------------

    def log(self, name: str, data: JSON) -> None:
        """Log an event of the run, behind everything posted before it."""
        self._loop.post(self._sink.append_text, name, self._sink.encode(name, data))

    async def pace(self) -> None:
        """A point where a cancel may land; waits while the writer is full."""
        if self._error is not None:
            raise self._error
        if self._sink.full:
            await self._loop.to_trio(self._sink.wait_for_room)
        else:
            await asyncio.sleep(0)

    def hold_event(self, name: str, data: JSON) -> None:
        """A state event, logged with the next root checkpoint."""
        self._events.append((name, self._sink.encode(name, data)))

    # -- checkpoints --------------------------------------------------------------------

    def hold(self, row: CheckpointRow) -> None:
        key = (row.checkpoint_ns, row.checkpoint_id)
        if key in self._released:
            self._queue([row], self._writes.pop(key, []))
            return
        self._held[key] = row
        self._arrived.setdefault(key, asyncio.Event()).set()

    def hold_writes(self, rows: list[WriteRow]) -> None:
        """Writes on a held checkpoint wait for it; on any other they go at once."""
        key = (rows[0].checkpoint_ns, rows[0].checkpoint_id)
        if key in self._held:
            self._writes.setdefault(key, []).extend(rows)
        else:
            self._queue([], rows)

    async def commit(self, checkpoint_id: str) -> None:
        """The root checkpoint ``checkpoint_id`` was announced: log it with its events.

        Waits until the saver has handed it over (LangGraph saves in the
        background, at once), unless it was saved before this run (a resumed
        run announces the checkpoint it starts from). Should the hand-over
        not come within :data:`HANDOVER_WAIT`, the events are logged alone
        and the checkpoint queued behind them when it comes: later, never
        ahead of its events.
        """
        key = ("", checkpoint_id)
        arrived = self._arrived.setdefault(key, asyncio.Event())
        if key not in self._released and not arrived.is_set():
            saved = await self._loop.to_trio(
                self._store.get_checkpoint, self.thread_id, "", checkpoint_id
            )
            if saved is None:
                try:
                    async with asyncio.timeout(HANDOVER_WAIT):
                        await arrived.wait()
                except TimeoutError:
                    log.warning("checkpoint.late", extra={"checkpoint_id": checkpoint_id})
        self._flush(key)

    def release(self, checkpoint_ns: str, checkpoint_id: str) -> None:
        """A subgraph's checkpoint was announced: queue it now, or when it is handed over."""
        key = (checkpoint_ns, checkpoint_id)
        self._released.add(key)
        row = self._held.pop(key, None)
        if row is not None:
            self._queue([row], self._writes.pop(key, []))

    async def release_all(self) -> None:
        """Log the state events left and queue every checkpoint held; wait for the commit."""
        self._flush(None)
        for key in list(self._held):
            self.release(*key)
        await self._loop.to_trio(self._committed_on_trio)

    def _flush(self, key: _Key | None) -> None:
        """Post the held state events, then checkpoint ``key`` as one unit with them."""
        events, self._events = self._events, []
        row, writes = None, []
        if key is not None:
            self._released.add(key)
            self._arrived.pop(key, None)
            row = self._held.pop(key, None)
            if row is not None:
                writes = self._writes.pop(key, [])
        if events or row is not None:
            self._loop.post(self._flush_on_trio, events, row, writes)

    def _queue(self, rows: list[CheckpointRow], writes: list[WriteRow]) -> None:
        self._loop.post(self._save_on_trio, rows, writes, False)

    # -- on trio ----------------------------------------------------------------------------

    def _flush_on_trio(
        self, events: list[tuple[str, str]], row: CheckpointRow | None, writes: list[WriteRow]
    ) -> None:
        for name, text in events:
            self._sink.append_text(name, text)
        if row is not None:
            self._save_on_trio([row], writes, True)

    def _save_on_trio(
        self, rows: list[CheckpointRow], writes: list[WriteRow], sticky: bool
    ) -> None:
        try:
            self._last = self._writer.save_nowait(rows, writes, sticky=sticky)
        except StoreError as exc:  # the writer has stopped
            self._error = exc

    async def _committed_on_trio(self) -> None:
        if self._error is not None:
            raise self._error
        if self._last is not None:
            await self._last.wait()


# The gate of the run whose graph is executing in this context, if any.
current_gate: contextvars.ContextVar[CheckpointGate | None] = contextvars.ContextVar(
    "runyard_checkpoint_gate", default=None
)


@dataclasses.dataclass(frozen=True, slots=True)
class _Where:
    thread_id: str
    checkpoint_ns: str
    checkpoint_id: str | None

    @classmethod
    def of(cls, config: RunnableConfig) -> _Where:
        conf = config["configurable"]
        return cls(str(conf["thread_id"]), conf.get("checkpoint_ns", ""), get_checkpoint_id(config))

    def config(self, checkpoint_id: str | None = None) -> RunnableConfig:
        return {
            "configurable": {
                "thread_id": self.thread_id,
                "checkpoint_ns": self.checkpoint_ns,
                "checkpoint_id": checkpoint_id or self.checkpoint_id,
            }
        }


# A checkpoint as read on trio: its row, decoded, its channels' blobs, its pending writes.
_Loaded = tuple[CheckpointRow, Checkpoint, list[BlobRow], list[WriteRow]]


class RunyardSaver(BaseCheckpointSaver[str]):
    """Checkpoints in runyard's store; use from the graph loop."""

    def __init__(self, store: Store, writer: CommitWriter, loop: GraphLoop) -> None:
        super().__init__()
        self._store = store
        self._writer = writer
        self._loop = loop

    def get_next_version(self, current: str | int | None, channel: None) -> str:
        """A version that sorts after ``current`` and is unique to this write.

        A channel's blobs are stored once per version; a thread forked from
        an older checkpoint counts its versions up again from there, so a
        bare counter would name two different values alike.
        """
        if current is None:
            number = 0
        elif isinstance(current, int):  # written by an older saver, or LangGraph's default
            number = current
        else:
            number = int(current.split(".", 1)[0])
        return f"{number + 1:032}.{secrets.token_hex(8)}"

    # -- reads ----------------------------------------------------------------------

    def read_ahead(
        self, gate: CheckpointGate, checkpoint_ns: str, checkpoint_id: str | None
    ) -> None:
        """From trio: start reading the checkpoint a run will start from (the thread's
        newest, without ``checkpoint_id``), so the read overlaps the graph's start;
        its :meth:`aget_tuple` takes it."""
        where = _Where(gate.thread_id, checkpoint_ns, checkpoint_id)
        read = self._loop.ahead(self._load, gate.thread_id, checkpoint_ns, checkpoint_id, None, 1)
        gate.keep_ahead(where, read)

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        where = _Where.of(config)
        gate = current_gate.get()
        read: Awaitable[list[_Loaded]] | None = None
        if gate is not None:
            read = gate.take_ahead(where)
        if read is None:
            read = self._loop.to_trio(
                self._load, where.thread_id, where.checkpoint_ns, where.checkpoint_id, None, 1
            )
        found = await read
        return self._tuple(*found[0]) if found else None

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        conf = config["configurable"] if config else {}
        thread_id = conf.get("thread_id")
        checkpoint_id = conf.get("checkpoint_id")
        checkpoint_ns = conf.get("checkpoint_ns")
        found = await self._loop.to_trio(
            self._load,
            None if thread_id is None else str(thread_id),
            checkpoint_ns or "" if checkpoint_id is not None else checkpoint_ns,
            checkpoint_id,
            None if before is None else get_checkpoint_id(before),
            None if filter else limit,  # with a filter, the limit counts matches
        )
        if filter:
            found = [f for f in found if all(f[0].metadata.get(k) == v for k, v in filter.items())]
        for loaded in found[:limit]:
            yield self._tuple(*loaded)

    async def _load(
        self,
        thread_id: str | None,
        checkpoint_ns: str | None,
        checkpoint_id: str | None,
        before: str | None,
        limit: int | None,
    ) -> list[_Loaded]:
        """On trio: checkpoints newest first, each with its channels and writes, in one read.

        Their values are decoded on the graph loop (:meth:`_tuple`), not here on trio.
        """
        decoded: dict[tuple[str, str, str], Checkpoint] = {}

        def versions_of(row: CheckpointRow) -> dict[str, str]:
            checkpoint: Checkpoint = self.serde.loads_typed((row.type, row.checkpoint))
            decoded[row.thread_id, row.checkpoint_ns, row.checkpoint_id] = checkpoint
            return {channel: str(v) for channel, v in checkpoint["channel_versions"].items()}

        loaded = await self._store.load_checkpoints(
            thread_id,
            checkpoint_ns,
            checkpoint_id=checkpoint_id,
            before=before,
            limit=limit,
            versions_of=versions_of,
        )
        return [
            (row, decoded[row.thread_id, row.checkpoint_ns, row.checkpoint_id], blobs, writes)
            for row, blobs, writes in loaded
        ]

    def _tuple(
        self,
        row: CheckpointRow,
        checkpoint: Checkpoint,
        blobs: list[BlobRow],
        writes: list[WriteRow],
    ) -> CheckpointTuple:
        checkpoint["channel_values"] = {
            b.channel: self.serde.loads_typed((b.type, b.blob))
            for b in blobs
            if b.type != _EMPTY and b.blob is not None
        }
        where = _Where(row.thread_id, row.checkpoint_ns, row.checkpoint_id)
        parent = row.parent_checkpoint_id
        return CheckpointTuple(
            config=where.config(),
            checkpoint=checkpoint,
            metadata=row.metadata,  # type: ignore[arg-type]
            parent_config=None if parent is None else where.config(parent),
            pending_writes=[
                (w.task_id, w.channel, self.serde.loads_typed((w.type, w.blob or b"")))
                for w in writes
            ],
        )

    # -- writes ---------------------------------------------------------------------

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        where = _Where.of(config)
        values = checkpoint["channel_values"]
        bare = {**checkpoint, "channel_values": {}}
        kind, payload = self.serde.dumps_typed(bare)
        meta = jsonable(get_serializable_checkpoint_metadata(config, metadata))
        row = CheckpointRow(
            thread_id=where.thread_id,
            checkpoint_ns=where.checkpoint_ns,
            checkpoint_id=checkpoint["id"],
            parent_checkpoint_id=where.checkpoint_id,
            run_id=_run_id(config, meta),
            type=kind,
            checkpoint=payload,
            metadata=meta,
            created_at=now(),
            blobs=[self._blob(where, ch, v, values) for ch, v in new_versions.items()],
        )
        gate = current_gate.get()
        if gate is not None and gate.thread_id == where.thread_id:
            gate.hold(row)
        else:
            await self._loop.to_trio(self._save, [row], [])
        return where.config(checkpoint["id"])

    def _blob(self, where: _Where, channel: str, version: Any, values: dict[str, Any]) -> BlobRow:
        kind, blob = (
            self.serde.dumps_typed(values[channel]) if channel in values else (_EMPTY, None)
        )
        return BlobRow(where.thread_id, where.checkpoint_ns, channel, str(version), kind, blob)

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        if not writes:
            return
        where = _Where.of(config)
        assert where.checkpoint_id is not None, "writes belong to a checkpoint"
        if _cancelled(writes):
            # What a task wrote before a cancel cut it short (its state update, say, but
            # not its edge's route) comes with its CancelledError. LangGraph reads a task
            # with any output write as finished (langgraph.pregel._task_status): a resumed
            # run would not run it again and could end early. Its control writes alone
            # keep it unfinished.
            writes = [(channel, value) for channel, value in writes if channel in WRITES_IDX_MAP]
        rows = []
        for idx, (channel, value) in enumerate(writes):
            kind, blob = self.serde.dumps_typed(value)
            rows.append(
                WriteRow(
                    thread_id=where.thread_id,
                    checkpoint_ns=where.checkpoint_ns,
                    checkpoint_id=where.checkpoint_id,
                    task_id=task_id,
                    idx=WRITES_IDX_MAP.get(channel, idx),
                    channel=channel,
                    type=kind,
                    blob=blob,
                    task_path=task_path,
                    replace=channel in WRITES_IDX_MAP,
                )
            )
        gate = current_gate.get()
        if gate is not None and gate.thread_id == where.thread_id:
            gate.hold_writes(rows)
        else:
            await self._loop.to_trio(self._save, [], rows)

    async def _save(self, rows: list[CheckpointRow], writes: list[WriteRow]) -> None:
        await self._writer.save_nowait(rows, writes).wait()

    # -- threads --------------------------------------------------------------------

    async def adelete_thread(self, thread_id: str) -> None:
        await self._loop.to_trio(self._delete, thread_id, None)

    async def adelete_for_runs(self, run_ids: Sequence[str]) -> None:
        await self._loop.to_trio(self._delete, None, list(run_ids))

    async def _delete(self, thread_id: str | None, run_ids: list[str] | None) -> None:
        await self._store.delete_checkpoints(thread_id=thread_id, run_ids=run_ids)

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        await self._loop.to_trio(self._store.copy_checkpoints, source_thread_id, target_thread_id)


def _cancelled(writes: Sequence[tuple[str, Any]]) -> bool:
    """Whether ``writes`` are those of a task that a cancel cut short (LangGraph's runner
    records the ``CancelledError`` as the task's error)."""
    return any(channel == ERROR and isinstance(v, asyncio.CancelledError) for channel, v in writes)


def _run_id(config: RunnableConfig, metadata: dict[str, Any]) -> str | None:
    run_id = metadata.get("run_id") or config.get("configurable", {}).get("run_id")
    return None if run_id is None else str(run_id)
