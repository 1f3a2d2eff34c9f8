"""A graph thread's state and history, read from and written to the checkpoint saver.

(Being built with the thread state routes.)
"""

from __future__ import annotations

from typing import Any

from .agents import AgentRegistry
from .store import Store


class ThreadStates:
    """The supervisor's thread-state operations (``supervisor.states``)."""

    def __init__(self, store: Store, agents: AgentRegistry, graph_host: Any) -> None:
        self._store = store
        self._agents = agents
        self._host = graph_host  # a GraphHost, or None when no graph is served
