"""Threads: create, read, search, delete; each decision about one thread under its lock.

A thread belongs to the owner that created it; to anybody else it does not
exist (:class:`NotFound`, never a hint that the id is taken, except on
create, where a taken id is a :class:`Conflict`).
"""

from __future__ import annotations

from .coordinator import Coordinator
from .errors import Conflict, NotFound
from .model import JSON, CancelReason, RunRequest, Thread, new_id, now
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
        status: str | None = None,
        limit: int = 10,
        offset: int = 0,
    ) -> list[Thread]:
        """The owner's threads, newest first, whose metadata holds every pair given."""
        return await self._store.search_threads(
            owner=owner, metadata=metadata or {}, status=status, limit=limit, offset=offset
        )

    async def delete(self, thread_id: str, *, owner: str = "") -> None:
        """Cancel the thread's runs, wait for their final states, delete it all."""
        await self.get(thread_id, owner=owner)
        async with self._coordinator.lock_thread(thread_id):
            handles = [self._table.get(rid) for rid in self._coordinator.line(thread_id)]
            live = [h for h in handles if h is not None]
            for handle in live:
                self._coordinator.cancel(handle.run_id, CancelReason.USER)
            for handle in live:
                await handle.finished.wait()
            await self._store.delete_thread(thread_id)
            for handle in live:
                self._runner.forget(handle)

    async def for_run(self, request: RunRequest) -> Thread:
        """The thread a run asks for: the owner's, or made now under ``if_not_exists``."""
        assert request.thread_id is not None
        thread = await self._store.get_thread(request.thread_id)
        if thread is not None and thread.owner == request.owner:
            return thread
        if thread is None and request.if_not_exists == "create":
            return await self.create(
                thread_id=request.thread_id, if_exists="do_nothing", owner=request.owner
            )
        raise NotFound(f"thread {request.thread_id} not found")
