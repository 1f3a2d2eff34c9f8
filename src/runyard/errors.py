"""Errors a client can cause, and errors of the store.

Each client error carries a message written by us, safe to show. The HTTP
layer maps the classes to status codes in one place (``http/errors.py``).
"""

from __future__ import annotations


class RunyardError(Exception):
    """Base of every error runyard raises on purpose."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class BadRequest(RunyardError):
    """Malformed JSON, a bad header."""


class Invalid(RunyardError):
    """A request that parses but breaks the schema; the detail names the field."""


class NotFound(RunyardError):
    """An unknown id (or one that belongs to somebody else)."""


class Conflict(RunyardError):
    """A busy thread under ``reject``, deleting an active run, an existing id."""


class PayloadTooLarge(RunyardError):
    """A body above the configured limit."""


class Unauthorized(RunyardError):
    """No bearer token, or one runyard does not know."""


class TooManyRequests(RunyardError):
    """A limit on active runs, subscribers or waits was reached; retry later."""


class ShuttingDown(RunyardError):
    """The server has begun to shut down and takes no new runs."""


class StoreError(RunyardError):
    """The database refused a write or a read (busy for too long, full, I/O)."""


class StoreUnavailable(StoreError):
    """The database cannot be reached (down, restarting, cut off): worth trying again."""


class StoreUnusable(RunyardError):
    """The database file cannot be used: corrupt, or written by a newer runyard."""


class LimitExceeded(Exception):
    """Raised inside an agent that breaks a limit (event size, events per run)."""


class AgentError(Exception):
    """Raise this from an agent to fail the run with a message clients may see.

    Any other exception fails the run with a generic message; its text and
    traceback go to the server log only.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
