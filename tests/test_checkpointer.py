"""runyard's LangGraph checkpoint saver: the official conformance suite, on a real store."""

from __future__ import annotations

from collections.abc import AsyncIterator

import trio
from langgraph.checkpoint.conformance import checkpointer_test, validate

from runyard.checkpointer import RunyardSaver
from runyard.commit import CommitWriter
from runyard.graph_loop import GraphLoop
from runyard.store import SQLiteStore


async def test_the_saver_passes_every_langgraph_conformance_suite(
    store: SQLiteStore, nursery: trio.Nursery
) -> None:
    writer = CommitWriter(store)
    await nursery.start(writer.serve)
    loop = GraphLoop()
    await nursery.start(loop.serve)

    @checkpointer_test(name="RunyardSaver")
    async def saver() -> AsyncIterator[RunyardSaver]:
        yield RunyardSaver(store, writer, loop)

    report = await loop.run(validate, saver)
    report.print_report()
    failures = {name: result.failures for name, result in report.results.items()}
    assert {name: f for name, f in failures.items() if f} == {}
    assert report.passed_all()  # base and every extended capability the saver has
    ran = {name: result.tests_passed for name, result in report.results.items()}
    assert all(ran[name] > 0 for name in ("put", "put_writes", "get_tuple", "list")), ran
    assert ran["delete_for_runs"] > 0
    assert ran["copy_thread"] > 0
