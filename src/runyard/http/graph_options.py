"""The LangGraph fields of a run body: resume, fork, interrupt, stream subgraphs.

:class:`GraphOptions` declares them; the run-create body
(:class:`~.bodies.RunCreate`) extends it, so they are checked with the rest of
the body (422 naming the field) and documented with it. What passes is kept
as sent in the run's options, which a graph run reads
(:mod:`runyard.graph_run`) and a plain runyard agent ignores. A ``command``
needs a thread to resume: without one it is a 400.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field

from ..errors import BadRequest
from ..model import JSON, RunRequest
from .schema import Body, Object

# The defaults of a run request, stated once in the model.
REQUEST_DEFAULTS = RunRequest(assistant_id="")


class Checkpoint(Body):
    """Where in a thread's history: a checkpoint's id, namespace and map."""

    checkpoint_id: str | None = Field(default=None, description="none: the newest")
    checkpoint_ns: str = Field(
        default="", description="the (sub)graph's namespace; '' for the root"
    )
    checkpoint_map: Object | None = None


class Send(Body):
    """A node to go to, with the input it gets."""

    node: str
    input: Any = None


class Command(Body):
    """Resume an interrupted graph, update its state or send it to nodes (LangGraph's Command)."""

    # A misspelt key would resume nothing without a word: refused instead.
    model_config = ConfigDict(extra="forbid")

    resume: Any = None
    update: Any = None
    goto: str | Send | list[str | Send] | None = None
    graph: str | None = None


Nodes = Annotated[
    Literal["*"] | list[str], Field(description="'*' (every node) or a list of node names")
]


class GraphOptions(Body):
    """The fields of a run body that only a LangGraph graph reads."""

    command: Command | None = None
    checkpoint: Checkpoint | None = Field(
        default=None, description="run from this checkpoint (a fork)"
    )
    checkpoint_id: str | None = Field(default=None, description="the same, by its id alone")
    interrupt_before: Nodes | None = None
    interrupt_after: Nodes | None = None
    stream_subgraphs: bool = Field(default=False, description="stream the subgraphs' events too")
    resume_on_restart: bool | None = Field(
        default=None,
        description="after a crash, go on from the last checkpoint (default: the server's)",
    )
    durability: Literal["sync", "async", "exit"] | None = Field(
        default=None, description="when checkpoints are saved"
    )
    on_completion: Literal["delete", "keep"] = Field(
        default=REQUEST_DEFAULTS.on_completion,  # type: ignore[arg-type]
        description="what becomes of a thread-less run's thread when the run ends",
    )

    def options(self, *, thread_id: str | None) -> dict[str, JSON]:
        """The run's options: the fields that were given, as sent (less their nulls)."""
        if self.command is not None and thread_id is None:
            raise BadRequest("a run with 'command' resumes a thread: start it on one")
        given = self.model_dump(
            include={"command", "interrupt_before", "interrupt_after", "durability"},
            exclude_unset=True,
        )
        checkpoint = self.checkpoint.model_dump(exclude_unset=True) if self.checkpoint else None
        if self.checkpoint_id is not None:
            checkpoint = {**(checkpoint or {}), "checkpoint_id": self.checkpoint_id}
        if checkpoint is not None:
            given["checkpoint"] = checkpoint
        if self.stream_subgraphs:
            given["stream_subgraphs"] = True
        if self.resume_on_restart is not None:
            given["resume_on_restart"] = self.resume_on_restart
        return given
