"""The PostgreSQL database under every :class:`~runyard.store.postgres.PostgresStore`.

:class:`PostgresBase` keeps one writer connection behind a ``CapacityLimiter(1)``
and a few reader connections, and runs every operation in a worker thread
with psycopg's blocking API (its asyncio API does not run under trio). A
write is one transaction; a read runs on whichever reader is free. MVCC lets
reads go on during a write, as WAL does for SQLite.

Waiting for a lock held by another connection (another replica, say) is
bounded by ``lock_timeout`` (:data:`~.retry.BUSY_TIMEOUT_MS`), and such an
attempt, like a serialization failure or a deadlock, is retried with the
back-off of :mod:`.retry` until :data:`~.retry.BUSY_RETRY_SECONDS`; any other
failure raises :class:`StoreError` at once, its message naming the error
class and SQLSTATE only (the server's own words may quote row data), except
text holding NUL, which PostgreSQL cannot store: :class:`Invalid`. A
connection the server closed while it was idle (a restart) is made again by
the next operation, which goes on; one that breaks during an operation fails
it (a write may or may not have committed) and is made again by the next.
A server that cannot be reached raises :class:`~runyard.errors.StoreUnavailable`
(the commit writer holds its batch and tries again for a while).

Opened with ``cluster=True`` (a replica), the store also holds a connection
for its lease (:mod:`.pg_cluster`), kept apart so a long write never delays
a heartbeat, and every write transaction first checks that lease
(:meth:`PostgresBase._fence`). Replicas share the database's owner lock,
which an ``exclusive`` store takes alone: the two kinds never serve one
database together.

Cancellation: as for :class:`~.connection.SQLiteBase`. An operation
cancelled while it waits for a connection or between two attempts raises
``trio.Cancelled`` and has written nothing; one cancelled during an attempt
finishes that attempt first (a write commits or rolls back whole), within
``statement_timeout`` per statement. :meth:`PostgresBase.aclose` is shielded:
it waits for the operations in flight and closes every connection.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import psycopg
import psycopg.conninfo
import psycopg.errors
import trio

from ..errors import Invalid, StoreError, StoreUnavailable, StoreUnusable
from ..stats import STORE
from . import retry
from .pg_schema import FENCE_SQLSTATE, Conn, migrate
from .url import redact

log = logging.getLogger("runyard.store")

T = TypeVar("T")

# Reader connections: reads run side by side, and beside the write in flight.
READERS = 3
# Seconds to reach the server before an operation (or open) gives up.
CONNECT_TIMEOUT = 10
# The longest one statement may run (ms): a worker thread cannot be cancelled
# from trio, so this bounds how long a cancelled operation holds its caller.
STATEMENT_TIMEOUT_MS = 30_000
# The first key of the owner lock (the second is the schema's).
OWNER_LOCK = 0x72756E79  # "runy"
# How long taking the owner lock keeps trying: a process that just stopped frees it
# a moment after its connection closes, not at once.
OWNER_LOCK_WAIT = 2.0  # seconds
# Rows a scan fetches at a time (searches that filter rows in Python).
SCAN_ROWS = 500
# One process per database (schema), or any number of replicas: a session lock,
# exclusive or shared, which the server frees when the connection ends.
_TAKE_OWNER_LOCK = f"SELECT pg_try_advisory_lock({OWNER_LOCK}, hashtext(current_schema()))"
_SHARE_OWNER_LOCK = f"SELECT pg_try_advisory_lock_shared({OWNER_LOCK}, hashtext(current_schema()))"
# Errors after which the same operation may succeed: another transaction held a
# lock past lock_timeout, or the two could not both commit.
_BUSY = (
    psycopg.errors.LockNotAvailable,
    psycopg.errors.SerializationFailure,
    psycopg.errors.DeadlockDetected,
)
# SQLSTATEs of a server that went away or is not taking connections yet: an
# administrator's or a crash's shutdown, a server still starting. libpq's own
# connection failures (refused, no socket) carry none; class 08 is the
# connection's.
_GONE = frozenset({"57P01", "57P02", "57P03"})


def _conninfo(url: str) -> str:
    """The connection string of a libpq URL, with runyard's defaults added."""
    try:
        params = psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        raise StoreUnusable(f"{redact(url)} is not a valid PostgreSQL URL") from None
    params.setdefault("connect_timeout", CONNECT_TIMEOUT)
    params.setdefault("application_name", "runyard")
    return psycopg.conninfo.make_conninfo("", **params)


LEASE_LOST = "this replica's lease was lost (another replica reaped it, or it left)"


class LeaseLost(StoreError):
    """This replica no longer holds its lease (it was reaped, or it left): it may not
    write, and the runs it held are no longer its own."""


class _Link:
    """One connection to the server, made again after the last one broke.

    ``owner_lock``: a statement taking the database's owner lock (exclusive: no
    other runyard process can use the database while this one does; shared:
    only replicas can).
    """

    def __init__(self, conninfo: str, *, read_only: bool, owner_lock: str | None = None) -> None:
        self._conninfo = conninfo
        self._read_only = read_only
        self._owner_lock = owner_lock
        self._conn: Conn | None = None

    def get(self) -> Conn:
        """The connection, connecting first if there is none or it broke."""
        if self._conn is None or self._conn.closed:
            self._conn = self._connect()
        return self._conn

    def _connect(self) -> Conn:
        conn = psycopg.connect(self._conninfo, autocommit=True)
        if not self._read_only:
            # Writes run in pipelines: a statement psycopg prepares in a pipeline that
            # then fails (a lock wait past its bound) is taken for prepared all the
            # same, and the next try fails on it ("prepared statement does not exist").
            conn.prepare_threshold = None
        try:
            conn.execute(f"SET lock_timeout = {retry.BUSY_TIMEOUT_MS}")
            conn.execute(f"SET statement_timeout = {STATEMENT_TIMEOUT_MS}")
            if self._read_only:
                conn.execute("SET default_transaction_read_only = on")
            if self._owner_lock and not _take_lock(conn, self._owner_lock):
                raise StoreError("the database is in use by another runyard process")
        except BaseException:
            conn.close()
            raise
        return conn

    def begin(self) -> Conn:
        """The connection, in a new transaction.

        A connection the server closed while it sat idle (a restart, an idle
        timeout) fails at ``BEGIN``, before anything was written, so it is
        made again once and the transaction begun on the new one.
        """
        conn = self.get()
        try:
            conn.execute("BEGIN")
        except psycopg.OperationalError:
            if not conn.closed:
                raise
            conn = self.get()
            conn.execute("BEGIN")
        return conn

    def read(self, fn: Callable[[Conn], T]) -> T:
        """``fn`` on the connection; once more on a new one if the server had closed it
        (a read may be repeated)."""
        conn = self.get()
        try:
            return fn(conn)
        except psycopg.OperationalError:
            if not conn.closed:
                raise
            return fn(self.get())

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class PostgresBase:
    """One PostgreSQL database: its connections, their threads, its lifetime.

    ``exclusive``: this process alone uses the database; ``cluster``: it is one
    replica of several (the two exclude each other).
    """

    def __init__(
        self, url: str, *, exclusive: bool = False, cluster: bool = False, readers: int = READERS
    ) -> None:
        if exclusive and cluster:
            raise ValueError("a store is exclusive or a replica of a cluster, not both")
        self.name = redact(url)  # for messages and logs: no password
        self.cluster = cluster
        self._conninfo = _conninfo(url)
        owner_lock = _TAKE_OWNER_LOCK if exclusive else _SHARE_OWNER_LOCK if cluster else None
        self._writer = _Link(self._conninfo, read_only=False, owner_lock=owner_lock)
        self._readers = [_Link(self._conninfo, read_only=True) for _ in range(readers)]
        self._write_limiter = trio.CapacityLimiter(1)
        self._read_slots = trio.Semaphore(readers)
        # A replica's lease: its own connection, so heartbeats never wait behind writes.
        self._lease_link = _Link(self._conninfo, read_only=False)
        self._lease_limiter = trio.CapacityLimiter(1)
        # A replica's thread locks (session advisory locks): a connection of their own too.
        self._lock_link = _Link(self._conninfo, read_only=False)
        self._lock_limiter = trio.CapacityLimiter(1)
        self.closed = False

    # -- lifetime ---------------------------------------------------------------

    async def open(self) -> None:
        """Connect, creating or migrating the schema; raise :class:`StoreUnusable`."""
        await trio.to_thread.run_sync(self._open_sync)

    def _open_sync(self) -> None:
        try:
            migrate(self._writer.get(), self.name, cluster=self.cluster)
            for reader in self._readers:
                reader.get()
        except StoreUnusable:
            self._close_sync()
            raise
        except StoreError as exc:  # another process holds the owner lock
            self._close_sync()
            raise StoreUnusable(
                f"{self.name} is in use by another runyard process; stop it first"
                " or use another --db"
            ) from exc
        except psycopg.OperationalError as exc:
            self._close_sync()
            # libpq's own words say why (refused, authentication, no such database);
            # they never hold the password.
            reason = " ".join(str(exc).split())
            raise StoreUnusable(f"cannot use {self.name}: {reason}") from None
        except psycopg.Error as exc:
            self._close_sync()
            raise StoreUnusable(
                f"{self.name} is not a usable runyard database ({_describe(exc)});"
                " it was left untouched"
            ) from None

    async def aclose(self) -> None:
        """Close every connection, after the reads and the write in flight have finished."""
        if self.closed:
            return
        with trio.CancelScope(shield=True):
            async with contextlib.AsyncExitStack() as held:
                await held.enter_async_context(self._write_limiter)
                await held.enter_async_context(self._lease_limiter)
                await held.enter_async_context(self._lock_limiter)
                for _ in self._readers:
                    await held.enter_async_context(self._read_slots)
                self._close_sync()

    def _close_sync(self) -> None:
        self.closed = True
        for link in (*self._readers, self._writer, self._lease_link, self._lock_link):
            link.close()

    # -- plumbing -----------------------------------------------------------------

    async def _write(
        self,
        fn: Callable[[Conn], T],
        *,
        fenced: bool = True,
        pipelined: bool = False,
        bulk: Callable[[Conn], None] | None = None,
    ) -> T:
        """Run ``fn`` in one transaction on the writer's connection, in a worker thread.

        Raises :class:`StoreError` once the transaction was rolled back, for a
        database that stayed locked past the bound or any other database error.
        ``fenced``: the transaction runs :meth:`_fence` before its ``fn``;
        ``pipelined`` and ``bulk``: see :meth:`_transaction`.
        """

        def transaction() -> T:
            return self._transaction(
                self._writer, fn, fenced=fenced, pipelined=pipelined, bulk=bulk
            )

        async with self._write_limiter:
            return await self._attempts(transaction, action="write")

    def _transaction(
        self,
        link: _Link,
        fn: Callable[[Conn], T],
        *,
        fenced: bool,
        pipelined: bool = False,
        bulk: Callable[[Conn], None] | None = None,
    ) -> T:
        """``fn`` in one transaction on ``link`` (in a worker thread).

        ``pipelined``: the fence, ``fn``'s statements and the COMMIT go in one
        pipeline (one round trip when ``fn`` reads nothing back); only for a
        ``fn`` that does not look at a statement's result without fetching it
        (``rowcount`` is unknown in a pipeline until its results come).
        ``bulk``: a first step that cannot be pipelined (a COPY), run before.
        """
        conn = self._unless_closed(link).begin()
        try:
            if bulk is not None:
                bulk(conn)
            with conn.pipeline() if pipelined else contextlib.nullcontext():
                if fenced:
                    self._fence(conn)
                result = fn(conn)
                conn.execute("COMMIT")
        except BaseException:
            if not conn.closed:
                conn.execute("ROLLBACK")
            raise
        return result

    def _fence(self, conn: Conn) -> None:
        """Make the transaction fail whole if this process may no longer write
        (:class:`LeaseLost`), at the latest when it commits.

        Nothing to check for a store that is not a replica; a replica checks
        that it still holds its lease (:mod:`.pg_cluster`).
        """

    async def _read(self, fn: Callable[[Conn], T]) -> T:
        """Run ``fn`` on a free reader's connection; errors as for :meth:`_write`."""
        async with self._read_slots:
            reader = self._readers.pop()
            try:
                return await self._attempts(
                    lambda: self._unless_closed(reader).read(fn), action="read"
                )
            finally:
                self._readers.append(reader)

    def _unless_closed(self, link: _Link) -> _Link:
        """``link``, or :class:`StoreError` once the store is closed (in the worker thread)."""
        if self.closed:
            raise StoreError("the database is closed")
        return link

    async def _attempts(self, fn: Callable[[], T], *, action: str) -> T:
        """Run ``fn`` in a worker thread until it is not busy, within the bound of :mod:`.retry`."""
        give_up = trio.current_time() + retry.BUSY_RETRY_SECONDS
        delay = retry.BACKOFF_START
        while True:
            try:
                return await trio.to_thread.run_sync(fn)
            except _BUSY as exc:
                if trio.current_time() > give_up:
                    STORE.errors[action] += 1
                    raise StoreError(f"database stayed locked; {action} abandoned") from exc
            except psycopg.Error as exc:
                if exc.sqlstate == FENCE_SQLSTATE:
                    raise LeaseLost(LEASE_LOST) from None
                if isinstance(exc, psycopg.DataError) and exc.sqlstate is None:
                    # psycopg refused a str holding NUL, which PostgreSQL's text cannot.
                    raise Invalid("a text value holds a NUL character") from None
                STORE.errors[action] += 1
                if _unreachable(exc):
                    raise StoreUnavailable(f"database unreachable during a {action}") from exc
                raise StoreError(f"database {action} failed ({_describe(exc)})") from exc
            except StoreError:
                STORE.errors[action] += 1  # the store is closed
                raise
            STORE.retries[action] += 1
            log.info("store.busy", extra={"action": action, "retry_in": delay})
            await trio.sleep(delay)
            delay = min(delay * 2, retry.BACKOFF_MAX)


def _unreachable(exc: psycopg.Error) -> bool:
    """Whether ``exc`` says the server cannot be reached, rather than refusing the work.

    A write cut off this way may have committed before its answer was lost; the
    commit writer tries the batch again as such (:attr:`~.interface.Batch.again`).
    """
    if not isinstance(exc, psycopg.OperationalError):
        return False
    state = exc.sqlstate
    return state is None or state.startswith("08") or state in _GONE


def _describe(exc: psycopg.Error) -> str:
    """An error as logs may show it: its class and SQLSTATE, never the server's words."""
    return f"{type(exc).__name__}, SQLSTATE {exc.sqlstate or 'none'}"


@contextlib.contextmanager
def scan(conn: Conn, query: str, args: Any = ()) -> Iterator[Iterator[tuple[Any, ...]]]:
    """The rows of ``query``, fetched :data:`SCAN_ROWS` at a time as they are read.

    For searches that match rows in Python and stop once a page is full: a
    server-side cursor in a transaction of its own, closed on leaving.
    """
    with conn.transaction(), conn.cursor(name="runyard_scan") as cursor:
        cursor.itersize = SCAN_ROWS
        cursor.execute(query, args)
        yield iter(cursor)


def one_of(column: str, values: Sequence[str]) -> tuple[str, tuple[list[str]]]:
    """PostgreSQL's :data:`~.interface.OneOf`: the values as one array."""
    return f"{column} = ANY(%s)", (list(values),)


def _take_lock(conn: Conn, query: str) -> bool:
    """Run the owner lock's ``pg_try_advisory_lock`` until it answers true, for at most
    :data:`OWNER_LOCK_WAIT` (in a worker thread: the sleeps block only it)."""
    deadline = time.monotonic() + OWNER_LOCK_WAIT
    while conn.execute(query).fetchone() != (True,):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True
