"""Assistants in a PostgreSQL store: the :class:`~.assistants.AssistantStore` part.

The same tables, rules and code as :mod:`.assistants`: ``assistants`` holds
each one as it is now, ``assistant_versions`` every version made. A change
locks the assistant's row before it reads the last version, so changes
through two replicas at once make two versions and neither is lost. Searches
sort as SQLite sorts (names without regard to ASCII case: ``lower()`` under
the columns' "C" collation folds ASCII only).
"""

from __future__ import annotations

from .assistants import AssistantsOnSQL, AssistantSql
from .pg_connection import PostgresBase, one_of, scan
from .pg_schema import insert, order
from .schema import ASSISTANT_VERSIONS, ASSISTANTS

PG_ASSISTANTS = AssistantSql(
    mark="%s",
    add=insert(ASSISTANTS, "ignore"),
    add_version=insert(ASSISTANT_VERSIONS),
    replace=insert(ASSISTANTS, "replace"),
    lock=" FOR UPDATE",
    scan=scan,
    one_of=one_of,
    fold="lower({})",
    order=order,
)


class PostgresAssistants(PostgresBase, AssistantsOnSQL):
    """The :class:`~.assistants.AssistantStore` part of a PostgreSQL store."""

    _assistants = PG_ASSISTANTS
