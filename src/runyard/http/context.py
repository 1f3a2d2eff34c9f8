"""What a handler needs besides its URL: the supervisor, the settings, the caller, the body.

:func:`~runyard.http.app.create_app` stores one :class:`Runyard` in
``app.extensions``; the functions here read it through ``current_app``, so a
handler is a plain module-level function.
"""

from __future__ import annotations

import dataclasses

from quart import current_app, g, request

from ..config import Settings
from ..errors import PayloadTooLarge
from ..model import JSON
from ..supervisor import Supervisor
from . import schema

# The key of the app's extensions that holds the Runyard.
EXTENSION = "runyard"


@dataclasses.dataclass(frozen=True, slots=True)
class Runyard:
    """What ``create_app`` was given, plus what it derived once from the settings."""

    supervisor: Supervisor
    settings: Settings
    tokens: dict[str, str]  # bearer token -> owner; empty: no authentication


def runyard() -> Runyard:
    found = current_app.extensions[EXTENSION]
    assert isinstance(found, Runyard)
    return found


def supervisor() -> Supervisor:
    return runyard().supervisor


def settings() -> Settings:
    return runyard().settings


def owner() -> str:
    """The caller, as authenticated by :mod:`.access`; "" when tokens are off."""
    return str(g.get("owner", ""))


async def body() -> JSON:
    """The request body as JSON, refused before reading if it says it is too large.

    Quart's ``MAX_CONTENT_LENGTH`` still caps a body sent without a length.
    """
    limit = settings().max_body
    length = request.content_length
    if length is not None and length > limit:
        raise PayloadTooLarge(f"the request body is larger than {limit} bytes")
    return schema.parse_json(await request.get_data(cache=False, as_text=False))
