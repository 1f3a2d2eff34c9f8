"""LangGraph's long-term memory (``BaseStore``) on runyard's store, for one owner.

A graph gets a :class:`RunyardMemory` as its ``store`` (``graph.copy(update=
{"store": RunyardMemory(store, graph_loop, owner)})``); its nodes then ``aput``, ``aget``,
``asearch`` and ``alist_namespaces`` items that the HTTP API's ``/store``
routes show to the same owner, and that survive a restart.

Graphs run on the graph loop (:mod:`runyard.graph_loop`); :meth:`abatch`
crosses to trio and runs each operation there, in order, on the store. A
cancelled node leaves the operations to finish on trio: an operation whose
write had started commits whole or not at all (see
:mod:`runyard.store.connection`). The blocking :meth:`batch`, for
synchronous nodes, works from the worker threads LangGraph runs them in.

Items are matched and filtered as :class:`~runyard.store.ItemStore` does;
there is no vector index, so a search's ``query`` is ignored (items are
listed newest first, with no score), and ``index`` is accepted and ignored.
A ``ttl`` runs from the item's last put: reads do not restart it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from datetime import UTC, datetime

import trio
from langgraph.store.base import (
    BaseStore,
    GetOp,
    Item,
    ListNamespacesOp,
    Op,
    PutOp,
    Result,
    SearchItem,
    SearchOp,
    validate_op_namespace,
)

from . import model
from .graph_loop import GraphLoop
from .store import Store


class RunyardMemory(BaseStore):
    """The items of one ``owner`` in runyard's store, as a LangGraph ``BaseStore``."""

    __slots__ = ("_loop", "_owner", "_store")
    supports_ttl = True

    def __init__(self, store: Store, loop: GraphLoop, owner: str = "") -> None:
        self._store = store
        self._loop = loop
        self._owner = owner

    async def abatch(self, ops: Iterable[Op]) -> list[Result]:
        """Run ``ops`` in order on the trio side; call from the graph loop."""
        return await self._loop.to_trio(self._run, _checked(ops))

    def batch(self, ops: Iterable[Op]) -> list[Result]:
        """Run ``ops`` from a worker thread (a sync node's); never from an event loop."""
        if trio.lowlevel.in_trio_run() or _on_asyncio_loop():
            raise RuntimeError(
                "RunyardMemory.batch blocks until the store answers: on the event loop,"
                " use the async methods (aput, aget, asearch, ...)"
            )
        return trio.from_thread.run(self._run, _checked(ops), trio_token=self._loop.token)

    async def _run(self, ops: list[Op]) -> list[Result]:
        return [await self._one(op) for op in ops]

    async def _one(self, op: Op) -> Result:
        store, owner = self._store, self._owner
        if isinstance(op, GetOp):
            found = await store.get_item(owner, op.namespace, op.key)
            return None if found is None else _item(found)
        if isinstance(op, PutOp):
            if op.value is None:
                await store.delete_item(owner, op.namespace, op.key)
            else:
                await store.put_item(owner, op.namespace, op.key, op.value, ttl=op.ttl)
            return None
        if isinstance(op, SearchOp):
            items = await store.search_items(
                owner, op.namespace_prefix, filter=op.filter, limit=op.limit, offset=op.offset
            )
            return [_search_item(i) for i in items]
        if isinstance(op, ListNamespacesOp):
            prefix = suffix = None
            for condition in op.match_conditions or ():
                if condition.match_type == "prefix":
                    prefix = tuple(condition.path)
                else:
                    suffix = tuple(condition.path)
            return await store.list_namespaces(
                owner,
                prefix=prefix,
                suffix=suffix,
                max_depth=op.max_depth,
                limit=op.limit,
                offset=op.offset,
            )
        raise TypeError(f"unknown store operation {type(op).__name__}")


def _on_asyncio_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _checked(ops: Iterable[Op]) -> list[Op]:
    """The ops as a list, each namespace checked by LangGraph's own rules first."""
    listed = list(ops)
    for op in listed:
        validate_op_namespace(op)
    return listed


def _time(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def _item(item: model.Item) -> Item:
    return Item(
        value=item.value,
        key=item.key,
        namespace=item.namespace,
        created_at=_time(item.created_at),
        updated_at=_time(item.updated_at),
    )


def _search_item(item: model.Item) -> SearchItem:
    return SearchItem(
        item.namespace, item.key, item.value, _time(item.created_at), _time(item.updated_at)
    )
