"""What only the PostgreSQL store has: its dialect of the tables, its migration among
replicas, its connections, and the URL that names it.

Everything both stores promise is tested on both in ``test_store.py``.
"""

from __future__ import annotations

import dataclasses
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trio

from runyard.errors import Invalid, StoreError, StoreUnusable
from runyard.model import Assistant, Thread
from runyard.store import SCHEMA_VERSION, Batch, SQLiteStore, is_postgres, redact, store_for

from . import pg
from .test_store import _columns, assistant, connected, new_run, schema_version

pytestmark = pytest.mark.trio

postgres_server = pg.postgres_server
postgres_url = pg.postgres_url

# SQLite's column types, as the PostgreSQL tables declare them.
TYPES = {"TEXT": "text", "REAL": "double precision", "INTEGER": "bigint", "BLOB": "bytea"}
# A column's shape: name, type, collation, not null, position in the primary key (0: none).
Shape = tuple[str, str, str | None, bool, int]


def sqlite_shape(conn: sqlite3.Connection, table: str) -> list[Shape]:
    return [
        (name, TYPES[kind], "C" if kind == "TEXT" else None, bool(notnull or pk), pk)
        for name, kind, notnull, pk in _columns(conn, table)
    ]


def postgres_shape(execute: Callable[[str], list[tuple[Any, ...]]], table: str) -> list[Shape]:
    rows = execute(
        "SELECT a.attname, format_type(a.atttypid, a.atttypmod), c.collname, a.attnotnull,"
        " coalesce(array_position(i.indkey::int2[], a.attnum) + 1, 0)"  # indkey counts from 0
        " FROM pg_attribute a LEFT JOIN pg_collation c ON c.oid = a.attcollation"
        " LEFT JOIN pg_index i ON i.indrelid = a.attrelid AND i.indisprimary"
        f" WHERE a.attrelid = '{table}'::regclass AND a.attnum > 0 AND NOT a.attisdropped"
        " ORDER BY a.attnum"
    )
    return [(name, kind, collation, notnull, pk) for name, kind, collation, notnull, pk in rows]


async def test_the_tables_keys_and_indexes_are_those_of_a_fresh_sqlite_file(
    db_path: str, postgres_url: str
) -> None:
    for store in (SQLiteStore(db_path), store_for(postgres_url)):
        await store.open()
        await store.aclose()
    file = sqlite3.connect(db_path)
    sqlite_tables = [
        r[0] for r in file.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
    ]
    sqlite_indexes = file.execute(
        "SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
    ).fetchall()
    with connected(postgres_url) as execute:
        tables = execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        indexes = execute(
            "SELECT indexname FROM pg_indexes WHERE schemaname = 'public'"
            " AND indexname NOT LIKE '%\\_pkey'"
        )
        assert sorted(tables) == sorted((t,) for t in sqlite_tables)
        assert sorted(indexes) == sorted(sqlite_indexes)
        for table in sqlite_tables:
            expected = sqlite_shape(file, table)
            if table == "runs":  # the order a thread's runs were written in: PostgreSQL's own
                expected.append(("queue_seq", "bigint", None, True, 0))
            assert postgres_shape(execute, table) == expected, table


async def test_a_schema_version_it_never_wrote_is_refused(postgres_url: str) -> None:
    store = store_for(postgres_url)
    await store.open()
    await store.aclose()
    with connected(postgres_url) as execute:
        execute("UPDATE meta SET value = 'two' WHERE key = 'schema_version'")
    with pytest.raises(StoreUnusable, match="unknown schema version"):
        await store_for(postgres_url).open()


async def test_replicas_opening_an_empty_database_at_once_migrate_it_once(
    postgres_url: str,
) -> None:
    stores = [store_for(postgres_url) for _ in range(4)]
    async with trio.open_nursery() as nursery:
        for store in stores:
            nursery.start_soon(store.open)
    try:
        await stores[0].put_thread(Thread("t", 1.0, 1.0))
        assert await stores[3].get_thread("t") == Thread("t", 1.0, 1.0)
    finally:
        for store in stores:
            await store.aclose()
    assert schema_version(postgres_url) == str(SCHEMA_VERSION)


async def test_replicas_changing_one_assistant_at_once_make_a_version_each(
    postgres_url: str,
) -> None:
    stores = [store_for(postgres_url) for _ in range(2)]
    for store in stores:
        await store.open()
    try:
        await stores[0].add_assistant(assistant("a", "zero"))

        def slowly(a: Assistant) -> Assistant:
            time.sleep(0.05)  # widens the window between reading and writing
            return dataclasses.replace(a, name="changed")

        async with trio.open_nursery() as nursery:
            for store in stores * 3:
                nursery.start_soon(store.change_assistant, "a", "ann", slowly)
        versions = await stores[1].assistant_versions("a", metadata={}, limit=10, offset=0)
        assert [v.version for v in versions] == [7, 6, 5, 4, 3, 2, 1]
    finally:
        for store in stores:
            await store.aclose()


async def test_text_holding_nul_is_refused_and_nothing_is_written(postgres_url: str) -> None:
    store = store_for(postgres_url)
    await store.open()
    try:
        with pytest.raises(Invalid, match="NUL"):
            await store.add_assistant(assistant("a", "nul\x00name"))
        assert await store.get_assistant("a") is None
        # In a batch, it fails the batch as any refusal does (the commit writer goes on).
        with pytest.raises(StoreError, match="NUL"):
            await store.commit(Batch(created=[(new_run("r", "t\x00", 1.0), None)]))
        assert await store.get_run("r") is None
    finally:
        await store.aclose()


async def test_connections_the_server_closed_are_made_again_by_the_next_use(
    postgres_url: str,
) -> None:
    store = store_for(postgres_url)
    await store.open()
    try:
        await store.put_thread(Thread("t", 1.0, 1.0))
        with connected(postgres_url) as execute:
            execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE application_name = 'runyard'"
            )
        await store.put_thread(Thread("u", 1.0, 1.0))
        assert await store.get_thread("u") == Thread("u", 1.0, 1.0)
        assert await store.get_thread("t") == Thread("t", 1.0, 1.0)
    finally:
        await store.aclose()


async def test_messages_never_show_the_password(postgres_server: pg.PostgresServer) -> None:
    url = "postgresql://ann:s3cret@127.0.0.1:1/runyard?connect_timeout=2&password=s3cret"
    with pytest.raises(StoreUnusable) as refused:
        await store_for(url).open()
    assert "s3cret" not in refused.value.detail
    assert "postgresql://ann@127.0.0.1:1/runyard" in refused.value.detail


async def test_a_url_names_a_postgres_store_and_anything_else_a_sqlite_file(
    tmp_path: Path,
) -> None:
    assert isinstance(store_for(str(tmp_path / "x.sqlite3")), SQLiteStore)
    assert not is_postgres("./postgresql.sqlite3")
    assert is_postgres("postgres://h/db")
    assert redact("postgresql://ann:pw@h:5432/db?sslmode=require&password=pw") == (
        "postgresql://ann@h:5432/db?sslmode=require"
    )
    assert redact("postgresql:///db?host=/run/pg") == "postgresql:///db?host=/run/pg"
    assert redact("./runyard.sqlite3") == "./runyard.sqlite3"


async def test_serve_on_a_postgres_url_runs_and_keeps_a_graph_thread(
    postgres_url: str, tmp_path: Path
) -> None:
    # `runyard serve --db postgresql://...`: the run, its events, the graph's checkpoints
    # and the thread's state live in PostgreSQL, and survive a restart of the server.
    import httpx

    from .process import ServerProcess, free_port

    project = Path(__file__).with_name("lg_counter") / "langgraph.json"
    env = {"RUNYARD_LANGGRAPH_JSON": str(project)}
    first = ServerProcess(postgres_url, free_port(), tmp_path, **env)
    # A second server on the same URL is a replica of the same cluster.
    second = ServerProcess(postgres_url, free_port(), tmp_path, **env)
    try:
        first.start()
        await first.wait_ready()
        async with httpx.AsyncClient(base_url=first.url, timeout=30) as c:
            thread = (await c.post("/threads", json={})).json()["thread_id"]
            body = {"assistant_id": "counter", "input": {"target": 3}}
            done = (await c.post(f"/threads/{thread}/runs/wait", json=body)).json()
            assert done["seen"] == [1, 2, 3]
        second.start()
        await second.wait_ready()
        async with httpx.AsyncClient(base_url=second.url, timeout=30) as c:
            state = (await c.get(f"/threads/{thread}/state")).json()
            assert state["values"]["seen"] == [1, 2, 3]
    finally:
        first.ensure_stopped()
        second.ensure_stopped()
    again = ServerProcess(postgres_url, free_port(), tmp_path, **env)
    try:
        again.start()
        await again.wait_ready()
        async with httpx.AsyncClient(base_url=again.url, timeout=30) as c:
            state = (await c.get(f"/threads/{thread}/state")).json()
            assert state["values"]["seen"] == [1, 2, 3]
            history = (await c.post(f"/threads/{thread}/history", json={"limit": 10})).json()
            assert len(history) >= 4  # input, then a checkpoint per step
            runs = (await c.get(f"/threads/{thread}/runs")).json()
            assert [r["status"] for r in runs] == ["success"]
    finally:
        again.ensure_stopped()
