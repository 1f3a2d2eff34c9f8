"""Assistants: named configurations of the registered graphs and agents.

(Being built with the assistants API: create, read, update with versions,
delete, search, count, and resolving an ``assistant_id`` for a run.)
"""

from __future__ import annotations

from .agents import AgentRegistry
from .store import Store


class Assistants:
    """The supervisor's assistant operations (``supervisor.assistants``)."""

    def __init__(self, store: Store, agents: AgentRegistry) -> None:
        self._store = store
        self._agents = agents
