"""runyard: long-running runs detached from the HTTP clients that asked for them."""

from .agents import Agent, AgentRegistry, AsyncioRunContext, RunContext, agent, load_agent
from .errors import AgentError
from .model import CancelReason, RunStatus

__version__ = "0.1.0"

__all__ = [
    "Agent",
    "AgentError",
    "AgentRegistry",
    "AsyncioRunContext",
    "CancelReason",
    "RunContext",
    "RunStatus",
    "__version__",
    "agent",
    "load_agent",
]
