"""Assistants: named configurations of the registered graphs and agents.

Every registered agent (a graph of ``langgraph.json`` included) is a *system*
assistant: its name is its ``assistant_id`` and its ``graph_id``, every owner
sees it, and it exists without a row, so it cannot be changed or deleted
(:class:`Conflict`). A client creates its own assistants from a graph, with a
config, a context and metadata; each change makes a new version, which
becomes the latest.

An assistant belongs to the owner that created it; to anybody else it does
not exist (:class:`NotFound`), except that a taken id is a :class:`Conflict`
on create. An assistant whose graph is no longer registered is hidden, as on
LangGraph's server.
"""

from __future__ import annotations

import dataclasses
import logging
import uuid
from typing import Any

import trio

from . import graph_info
from .agents import Agent, AgentRegistry
from .errors import BadRequest, Conflict, Invalid, NotFound
from .model import JSON, Assistant, new_id, now
from .store import Store
from .store.assistants import SORTABLE, AssistantFilter, contains, sort_key

log = logging.getLogger("runyard.assistants")

__all__ = ["SORTABLE", "Assistants", "Resolved"]

# The name LangGraph gives an assistant created without one.
DEFAULT_NAME = "Untitled"
# When a system assistant was created, as far as clients can tell: the epoch.
SYSTEM_TIMESTAMP = 0.0


@dataclasses.dataclass(frozen=True, slots=True)
class Resolved:
    """What a run needs of its assistant: the agent to run, and how to configure it."""

    graph_id: str  # the registered agent's name
    assistant_id: str
    config: dict[str, JSON]
    context: dict[str, JSON]

    def configure(self, config: dict[str, JSON]) -> dict[str, JSON]:
        """A run's config over the assistant's: the run's keys win, ``configurable`` merged."""
        if not self.config and not self.context:
            return config
        merged = {**self.config, **config}
        configurable = {
            **(self.config.get("configurable") or {}),
            **(config.get("configurable") or {}),
        }
        if configurable:
            merged["configurable"] = configurable
        if self.context and "context" not in config:
            merged["context"] = self.context
        return merged


def system_assistant(agent: Agent) -> Assistant:
    """A registered agent as an assistant."""
    runtime = "asyncio" if agent.asyncio or agent.graph is not None else "trio"
    return Assistant(
        assistant_id=agent.name,
        graph_id=agent.name,
        created_at=SYSTEM_TIMESTAMP,
        updated_at=SYSTEM_TIMESTAMP,
        name=agent.name,
        description=agent.description or None,
        metadata={"created_by": "system", "runtime": runtime},
    )


def _uuid(text: str) -> str | None:
    """``text`` as a UUID in its canonical form, or None."""
    try:
        return str(uuid.UUID(text))
    except ValueError:
        return None


def _settled(
    config: dict[str, JSON], context: dict[str, JSON]
) -> tuple[dict[str, JSON], dict[str, JSON]]:
    """Config and context kept in step, as LangGraph does: each carries the other's values."""
    configurable = config.get("configurable")
    if configurable is not None and not isinstance(configurable, dict):
        raise Invalid("field 'config.configurable' must be an object")
    tags = config.get("tags")
    if tags is not None and not (isinstance(tags, list) and all(isinstance(t, str) for t in tags)):
        raise Invalid("field 'config.tags' must be a list of strings")
    limit = config.get("recursion_limit")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise Invalid("field 'config.recursion_limit' must be an integer >= 1")
    if configurable and context:
        raise BadRequest("give 'context' or 'config.configurable', not both")
    if configurable:
        return config, configurable
    if context:
        return {**config, "configurable": context}, context
    return config, context


class Assistants:
    """The supervisor's assistant operations (``supervisor.assistants``)."""

    def __init__(self, store: Store, agents: AgentRegistry) -> None:
        self._store = store
        self._agents = agents

    # -- create, read, change, delete -------------------------------------------

    async def create(
        self,
        graph_id: str,
        *,
        assistant_id: str | None = None,
        config: dict[str, JSON] | None = None,
        context: dict[str, JSON] | None = None,
        metadata: dict[str, JSON] | None = None,
        name: str | None = None,
        description: str | None = None,
        if_exists: str = "raise",
        owner: str = "",
    ) -> Assistant:
        """A new assistant; with ``if_exists="do_nothing"`` the owner's existing one."""
        aid = new_id() if assistant_id is None else _uuid(assistant_id)
        if aid is None:
            raise Invalid("field 'assistant_id' must be a UUID")
        self._graph(graph_id)
        settled_config, settled_context = _settled(config or {}, context or {})
        ts = now()
        wanted = Assistant(
            assistant_id=aid,
            graph_id=graph_id,
            created_at=ts,
            updated_at=ts,
            name=name or DEFAULT_NAME,
            description=description,
            config=settled_config,
            context=settled_context,
            metadata=metadata or {},
            owner=owner,
        )
        stored, made = await self._store.add_assistant(wanted)
        if made or (if_exists == "do_nothing" and stored.owner == owner):
            return stored
        raise Conflict(f"assistant {aid} already exists")

    async def get(self, assistant_id: str, *, owner: str = "") -> Assistant:
        """The assistant as it is now; a registered agent's name gives its system assistant."""
        agent = self._agents.get(assistant_id)
        if agent is not None:
            return system_assistant(agent)
        aid = _uuid(assistant_id)  # created assistants have UUIDs: no read for anything else
        found = None if aid is None else await self._store.get_assistant(aid)
        if found is None or found.owner != owner or self._agents.get(found.graph_id) is None:
            raise NotFound(f"assistant {assistant_id} not found")
        return found

    async def update(
        self,
        assistant_id: str,
        *,
        graph_id: str | None = None,
        config: dict[str, JSON] | None = None,
        context: dict[str, JSON] | None = None,
        metadata: dict[str, JSON] | None = None,
        name: str | None = None,
        description: str | None = None,
        owner: str = "",
    ) -> Assistant:
        """Make a new version from the latest: the fields given replace theirs, metadata merges."""
        self._refuse_system(assistant_id, "changed")
        current = await self.get(assistant_id, owner=owner)
        if graph_id is not None:
            self._graph(graph_id)
        settled_config, settled_context = _settled(config or {}, context or {})
        ts = now()

        def change(latest: Assistant) -> Assistant:
            new_config, new_context = latest.config, latest.context
            if config:
                new_config = settled_config
                if context is not None or config.get("configurable"):
                    new_context = settled_context
            elif context is not None:
                new_context = context
                if context:
                    new_config = {**latest.config, "configurable": context}
            return dataclasses.replace(
                latest,
                graph_id=graph_id or latest.graph_id,
                config=new_config,
                context=new_context,
                metadata={**latest.metadata, **(metadata or {})},
                name=latest.name if name is None else name,
                description=latest.description if description is None else description,
                updated_at=ts,
            )

        changed = await self._store.change_assistant(current.assistant_id, owner, change)
        if changed is None:
            raise NotFound(f"assistant {assistant_id} not found")
        return changed

    async def delete(self, assistant_id: str, *, owner: str = "") -> None:
        """Delete the assistant and every version of it."""
        self._refuse_system(assistant_id, "deleted")
        aid = _uuid(assistant_id)
        if aid is None or not await self._store.delete_assistant(aid, owner):
            raise NotFound(f"assistant {assistant_id} not found")

    # -- versions ---------------------------------------------------------------

    async def versions(
        self,
        assistant_id: str,
        *,
        metadata: dict[str, JSON] | None = None,
        limit: int = 10,
        offset: int = 0,
        owner: str = "",
    ) -> list[Assistant]:
        """The assistant's versions, newest first, whose metadata contains ``metadata``."""
        agent = self._agents.get(assistant_id)
        if agent is not None:
            system = system_assistant(agent)
            found = [system] if contains(system.metadata, metadata or {}) else []
            return found[offset : offset + limit]
        current = await self.get(assistant_id, owner=owner)
        return await self._store.assistant_versions(
            current.assistant_id, metadata=metadata or {}, limit=limit, offset=offset
        )

    async def set_latest(self, assistant_id: str, version: int, *, owner: str = "") -> Assistant:
        """Make ``version`` the one that runs use (and that reads show)."""
        agent = self._agents.get(assistant_id)
        if agent is not None and version == 1:
            return system_assistant(agent)
        current = await self.get(assistant_id, owner=owner)
        latest = await self._store.set_latest_assistant(current.assistant_id, owner, version, now())
        if latest is None:
            raise NotFound(f"assistant {assistant_id} has no version {version}")
        return latest

    # -- search -----------------------------------------------------------------

    async def search(
        self,
        *,
        graph_id: str | None = None,
        name: str = "",
        metadata: dict[str, JSON] | None = None,
        sort_by: str = "created_at",
        descending: bool = True,
        limit: int = 10,
        offset: int = 0,
        owner: str = "",
    ) -> tuple[list[Assistant], bool]:
        """A page of the owner's assistants and the system ones, and whether more follow."""
        where = self._filter(owner, graph_id, name, metadata)
        end = offset + limit
        stored = await self._store.search_assistants(
            where, sort_by=sort_by, descending=descending, limit=end + 1, offset=0
        )
        found = sorted([*stored, *self._systems(where)], key=sort_key(sort_by), reverse=descending)
        return found[offset:end], len(found) > end

    async def count(
        self,
        *,
        graph_id: str | None = None,
        name: str = "",
        metadata: dict[str, JSON] | None = None,
        owner: str = "",
    ) -> int:
        where = self._filter(owner, graph_id, name, metadata)
        return await self._store.count_assistants(where) + len(self._systems(where))

    # -- runs -------------------------------------------------------------------

    async def resolve(self, assistant_id: str, owner: str) -> Resolved:
        """The agent a run with this ``assistant_id`` runs, and its config and context.

        A registered agent's name is answered without a read. Raises :class:`NotFound`.
        """
        agent = self._agents.get(assistant_id)
        if agent is not None:
            return Resolved(agent.name, agent.name, {}, {})
        found = await self.get(assistant_id, owner=owner)
        return Resolved(found.graph_id, found.assistant_id, dict(found.config), found.context)

    # -- the graph behind an assistant ------------------------------------------

    async def drawing(self, assistant_id: str, *, xray: bool | int, owner: str = "") -> JSON:
        """The graph as LangGraph draws it (nodes and edges); a plain agent is one node."""
        found, graph = await self._with_graph(assistant_id, owner)
        if graph is None:
            return graph_info.one_node(found.graph_id)
        return await trio.to_thread.run_sync(graph_info.drawing, graph, found.config, xray)

    async def schemas(self, assistant_id: str, *, owner: str = "") -> JSON:
        """The JSON schemas of the graph's input, output, state, config and context."""
        found, graph = await self._with_graph(assistant_id, owner)
        schemas = dict.fromkeys(graph_info.SCHEMA_PARTS)
        if graph is not None:
            schemas = await trio.to_thread.run_sync(graph_info.schemas, graph)
        return {"graph_id": found.graph_id, **schemas}

    async def subgraphs(
        self, assistant_id: str, *, namespace: str | None, recurse: bool, owner: str = ""
    ) -> JSON:
        """The schemas of the graph's subgraphs, by namespace (``parent|child`` when nested)."""
        _, graph = await self._with_graph(assistant_id, owner)
        if graph is None:
            return {}
        return await trio.to_thread.run_sync(graph_info.subgraphs, graph, namespace, recurse)

    # -- helpers ----------------------------------------------------------------

    def _graph(self, graph_id: str) -> Agent:
        agent = self._agents.get(graph_id)
        if agent is None:
            known = ", ".join(self._agents.names())
            raise NotFound(f"graph {graph_id!r} not found; the registered ones are: {known}")
        return agent

    async def _with_graph(self, assistant_id: str, owner: str) -> tuple[Assistant, Any]:
        """The assistant and its compiled graph (None for a plain agent).

        LangGraph's drawing and schema methods block (pydantic builds models),
        so the callers run them in a worker thread.
        """
        found = await self.get(assistant_id, owner=owner)
        return found, self._graph(found.graph_id).graph

    def _refuse_system(self, assistant_id: str, verb: str) -> None:
        if self._agents.get(assistant_id) is not None:
            raise Conflict(f"assistant {assistant_id!r} is a registered agent; it cannot be {verb}")

    def _filter(
        self, owner: str, graph_id: str | None, name: str, metadata: dict[str, JSON] | None
    ) -> AssistantFilter:
        if graph_id is None:
            return AssistantFilter(owner, tuple(self._agents.names()), name, metadata or {})
        return AssistantFilter(owner, (self._graph(graph_id).name,), name, metadata or {})

    def _systems(self, where: AssistantFilter) -> list[Assistant]:
        systems = (system_assistant(agent) for agent in self._agents.all())
        return [a for a in systems if where.matches(a)]
