"""Assistants: a graph with its configuration, and every version of it.

(Being built: the protocol and the SQLite part land with the assistants API.)
"""

from __future__ import annotations

from typing import Protocol

from .connection import SQLiteBase


class AssistantStore(Protocol):
    """Creating, versioning, searching and deleting assistants."""


class SQLiteAssistants(SQLiteBase):
    """The :class:`AssistantStore` part of :class:`~runyard.store.SQLiteStore`."""
