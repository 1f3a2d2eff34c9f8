"""The one place where errors become HTTP statuses.

Handlers raise runyard's own exception types; these handlers turn them into
``{"detail": "..."}`` bodies. Anything unexpected becomes a 500 whose body
says nothing of the exception; the traceback goes to the log. A store
failure's own words (they may quote SQLite) go to the log too; the client
reads a fixed sentence. ``/openapi.json`` reads its statuses from here.
"""

from __future__ import annotations

import logging

from quart import Quart, Response, jsonify
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from ..errors import (
    BadRequest,
    Conflict,
    Invalid,
    NotFound,
    PayloadTooLarge,
    RunyardError,
    ShuttingDown,
    StoreError,
    TooManyRequests,
    Unauthorized,
)

log = logging.getLogger("runyard.http")

# Seconds a client should wait before retrying a run refused during shutdown.
RETRY_AFTER_SECONDS = 5
# What a client reads when the store failed: its own message may quote SQLite.
STORE_DETAIL = "the database is unavailable; retry later"

STATUS: dict[type[RunyardError], int] = {
    BadRequest: 400,
    Unauthorized: 401,
    NotFound: 404,
    Conflict: 409,
    PayloadTooLarge: 413,
    Invalid: 422,
    TooManyRequests: 429,
    ShuttingDown: 503,
    StoreError: 503,
}


# The header each of these statuses carries, with what it tells the client.
HEADERS = {
    401: ("WWW-Authenticate", "the scheme to authenticate with: Bearer"),
    429: ("Retry-After", "seconds to wait before trying again"),
    503: ("Retry-After", "seconds to wait before trying again"),
}
_HEADER_VALUES = {
    401: 'Bearer realm="runyard"',
    429: str(RETRY_AFTER_SECONDS),
    503: str(RETRY_AFTER_SECONDS),
}


def error_response(status: int, detail: str) -> Response:
    response = jsonify({"detail": detail})
    response.status_code = status
    if status in HEADERS:
        response.headers[HEADERS[status][0]] = _HEADER_VALUES[status]
    return response


def status_of(exc: RunyardError) -> int:
    return status_for(type(exc))


def status_for(kind: type[RunyardError]) -> int:
    """The status of an error type (of its nearest mapped base); 500 if none is mapped."""
    for cls in kind.__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500


def install(app: Quart) -> None:
    """Register the mapping on ``app``."""

    @app.errorhandler(RunyardError)
    async def runyard_error(exc: RunyardError) -> Response:
        if isinstance(exc, StoreError):
            log.warning("http.store_error", extra={"detail": exc.detail})
            return error_response(status_of(exc), STORE_DETAIL)
        return error_response(status_of(exc), exc.detail)

    @app.errorhandler(HTTPException)
    async def http_error(exc: HTTPException) -> Response:
        status = exc.code or 500
        detail = {
            404: "not found",
            405: "method not allowed",
            413: "request body too large",
        }.get(status, (exc.name or "error").lower())
        response = error_response(status, detail)
        if isinstance(exc, MethodNotAllowed) and exc.valid_methods:
            response.headers["Allow"] = ", ".join(exc.valid_methods)  # RFC 9110 asks for it
        return response

    @app.errorhandler(Exception)
    async def unexpected(exc: Exception) -> Response:
        log.error("http.unexpected_error", exc_info=exc)
        return error_response(500, "internal error; details are in the server log")
