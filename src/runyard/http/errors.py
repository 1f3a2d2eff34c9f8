"""The one place where errors become HTTP statuses.

Handlers raise runyard's own exception types; these handlers turn them into
``{"detail": "..."}`` bodies. Anything unexpected becomes a 500 whose body
says nothing of the exception; the traceback goes to the log.
"""

from __future__ import annotations

import logging

from quart import Quart, Response, jsonify
from werkzeug.exceptions import HTTPException

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


def error_response(status: int, detail: str) -> Response:
    response = jsonify({"detail": detail})
    response.status_code = status
    if status in (429, 503):
        response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="runyard"'
    return response


def status_of(exc: RunyardError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500


def install(app: Quart) -> None:
    """Register the mapping on ``app``."""

    @app.errorhandler(RunyardError)
    async def runyard_error(exc: RunyardError) -> Response:
        return error_response(status_of(exc), exc.detail)

    @app.errorhandler(HTTPException)
    async def http_error(exc: HTTPException) -> Response:
        status = exc.code or 500
        detail = {
            404: "not found",
            405: "method not allowed",
            413: "request body too large",
        }.get(status, (exc.name or "error").lower())
        return error_response(status, detail)

    @app.errorhandler(Exception)
    async def unexpected(exc: Exception) -> Response:
        log.error("http.unexpected_error", exc_info=exc)
        return error_response(500, "internal error; details are in the server log")
