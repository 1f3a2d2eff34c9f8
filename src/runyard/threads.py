"""Threads: create, read, search, count, patch, copy, delete; decisions under the thread's lock.

A thread belongs to the owner that created it; to anybody else it does not
exist (:class:`NotFound`, never a hint that the id is taken, except on
create, where a taken id is a :class:`Conflict`).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from .coordinator import Coordinator
from .errors import Conflict, Invalid, NotFound
from .model import JSON, CancelReason, RunRequest, Thread, ThreadStatus, json_size, new_id, now
from .runner import Runner
from .runtable import RunTable
from .store import Store


class Threads:
    """The supervisor's thread operations (``supervisor.threads``)."""

    def __init__(
        self, store: Store, coordinator: Coordinator, table: RunTable, runner: Runner
    ) -> None:
        self._store = store
        self._coordinator = coordinator
        self._table = table
        self._runner = runner

    async def create(
        self,
        *,
        thread_id: str | None = None,
        metadata: dict[str, JSON] | None = None,
        if_exists: str = "raise",
        owner: str = "",
    ) -> Thread:
        """A new thread; with ``if_exists="do_nothing"`` the owner's existing one."""
        tid = thread_id or new_id()
        async with self._coordinator.lock_thread(tid):
            existing = await self._store.get_thread(tid)
            if existing is not None:
                if existing.owner == owner and if_exists == "do_nothing":
                    return existing
                raise Conflict(f"thread {tid} already exists")
            ts = now()
            thread = Thread(tid, ts, ts, metadata or {}, owner=owner)
            await self._store.put_thread(thread)
            return thread

    async def get(self, thread_id: str, *, owner: str = "") -> Thread:
        thread = await self._store.get_thread(thread_id)
        if thread is None or thread.owner != owner:
            raise NotFound(f"thread {thread_id} not found")
        return thread

    async def search(
        self,
        *,
        owner: str = "",
        metadata: dict[str, JSON] | None = None,
        values: dict[str, JSON] | None = None,
        status: str | None = None,
        limit: int = 10,
        offset: int = 0,
    ) -> list[Thread]:
        """The owner's threads, newest first, whose metadata and values hold every pair given."""
        return await self._store.search_threads(
            owner=owner,
            metadata=metadata or {},
            values=values or {},
            status=status,
            limit=limit,
            offset=offset,
        )

    async def count(
        self,
        *,
        owner: str = "",
        metadata: dict[str, JSON] | None = None,
        values: dict[str, JSON] | None = None,
        status: str | None = None,
    ) -> int:
        """How many threads :meth:`search` finds, without a limit."""
        return await self._store.count_threads(
            owner=owner, metadata=metadata or {}, values=values or {}, status=status
        )

    async def patch(
        self,
        thread_id: str,
        *,
        metadata: dict[str, JSON],
        owner: str = "",
        max_metadata: int | None = None,
    ) -> Thread:
        """Merge ``metadata`` into the thread's, key by key, up to ``max_metadata`` bytes."""
        thread = await self.get(thread_id, owner=owner)
        merged = {**thread.metadata, **metadata}
        if max_metadata is not None and json_size(merged) > max_metadata:
            raise Invalid(f"the thread's metadata would be larger than {max_metadata} bytes")
        patched = await self._store.patch_thread(thread_id, metadata, now())
        if patched is None:  # deleted meanwhile
            raise NotFound(f"thread {thread_id} not found")
        return patched

    async def copy(self, thread_id: str, *, owner: str = "") -> Thread:
        """A new thread with the metadata, values and every checkpoint of this one."""
        source = await self.get(thread_id, owner=owner)
        ts = now()
        status = ThreadStatus.INTERRUPTED if source.interrupts else ThreadStatus.IDLE
        copied = Thread(
            new_id(),
            ts,
            ts,
            dict(source.metadata),
            status=status,
            values=source.values,
            owner=owner,
            interrupts=dict(source.interrupts),
        )
        # Checkpoints first: a crash in between leaves rows no thread shows, never a
        # thread without its history.
        await self._store.copy_checkpoints(thread_id, copied.thread_id)
        await self._store.put_thread(copied)
        return copied

    @contextlib.asynccontextmanager
    async def quiet(self, thread_id: str) -> AsyncIterator[None]:
        """Hold the thread's lock while it has no pending or running run (else :class:`Conflict`).

        No run starts on the thread until the block ends: what it writes is
        never interleaved with a run's own state.
        """
        async with self._coordinator.lock_thread(thread_id):
            if await self._coordinator.unfinished(thread_id):
                raise Conflict(f"thread {thread_id} has a run in progress")
            yield

    async def delete(self, thread_id: str, *, owner: str = "") -> None:
        """Cancel the thread's runs, wait for their final states, delete it all."""
        await self.get(thread_id, owner=owner)
        async with self._coordinator.lock_thread(thread_id):
            live = await self._coordinator.unfinished(thread_id)
            for run_id in live:
                await self._coordinator.stop(run_id, CancelReason.USER)
            for run_id in live:
                await self._coordinator.wait_ended(run_id)
            await self._store.delete_thread(thread_id)
            for run_id in live:
                handle = self._table.get(run_id)
                if handle is not None:
                    self._runner.forget(handle)

    async def for_run(self, request: RunRequest) -> str:
        """The id of the thread a run asks for: the owner's, or made now under
        ``if_not_exists``. Its values (a whole conversation, say) are not read."""
        assert request.thread_id is not None
        owner = await self._store.thread_owner(request.thread_id)
        if owner == request.owner:
            return request.thread_id
        if owner is None and request.if_not_exists == "create":
            thread = await self.create(
                thread_id=request.thread_id, if_exists="do_nothing", owner=request.owner
            )
            return thread.thread_id
        raise NotFound(f"thread {request.thread_id} not found")
