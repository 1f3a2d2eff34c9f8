"""Which store a ``--db`` names: a PostgreSQL URL, or the path of a SQLite file.

A libpq URL (``postgresql://`` or ``postgres://``) names a
:class:`~runyard.store.postgres.PostgresStore`; anything else is a SQLite
file. psycopg is imported only for a URL, so the embedded default needs none
of the ``postgres`` extra. A URL may hold a password: log :func:`redact`'s
form of it, never the URL itself.
"""

from __future__ import annotations

import urllib.parse
from typing import TYPE_CHECKING

from ..errors import StoreUnusable
from .sqlite import SQLiteStore

if TYPE_CHECKING:
    from .postgres import PostgresStore

# The schemes of libpq's connection URLs.
POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def is_postgres(db: str) -> bool:
    """Whether ``db`` is a PostgreSQL URL rather than a SQLite path."""
    return db.startswith(POSTGRES_SCHEMES)


def store_for(
    db: str, *, exclusive: bool = False, replica: bool = False
) -> SQLiteStore | PostgresStore:
    """The store ``db`` names, not opened yet (``await store.open()``).

    ``exclusive``: this process must be the only one using the database (a
    lock the operating system or the server frees when the process dies).
    ``replica``: a PostgreSQL database is shared with other replicas of one
    cluster instead (a SQLite file has no replicas: ``exclusive`` holds).
    Raises :class:`StoreUnusable` for a URL when psycopg is not installed.
    """
    if not is_postgres(db):
        return SQLiteStore(db, exclusive=exclusive)
    try:
        from .postgres import PostgresStore
    except ImportError:
        raise StoreUnusable(
            "a PostgreSQL --db needs psycopg: pip install 'runyard[postgres]'"
        ) from None
    if replica:
        return PostgresStore(db, cluster=True)
    return PostgresStore(db, exclusive=exclusive)


def redact(db: str) -> str:
    """``db`` as logs and messages may show it: a URL without its password."""
    if not is_postgres(db):
        return db
    parts = urllib.parse.urlsplit(db)
    user, _, hosts = parts.netloc.rpartition("@")
    netloc = f"{user.partition(':')[0]}@{hosts}" if user else hosts
    query = urllib.parse.urlencode(
        [
            (key, value)
            for key, value in urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
            if key != "password"
        ],
        safe="/",
    )
    return f"{parts.scheme}://{netloc}{parts.path}" + (f"?{query}" if query else "")
