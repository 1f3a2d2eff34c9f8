"""Who may call: bearer tokens (owners) and the browser origins allowed by CORS.

With tokens configured, every request but :data:`PUBLIC_PATHS`, static files
and CORS preflights must carry one; the token's owner becomes ``g.owner`` and
scopes every thread and run the request can see. Without tokens every caller
is the owner "".
"""

from __future__ import annotations

import hmac

from quart import Quart, Response, g, request

from ..errors import Unauthorized
from .context import runyard

# Reachable without a token even when tokens are configured: no data behind them.
PUBLIC_PATHS = ("/ok", "/ready", "/", "/favicon.ico")
# The dashboard's token, as a cookie: EventSource cannot send headers.
TOKEN_COOKIE = "runyard_token"
# What a browser may read off a response: the SDK follows these to the run.
EXPOSED_HEADERS = "Content-Location, Location, Retry-After, X-Request-ID"
ALLOWED_METHODS = "GET, POST, PUT, PATCH, DELETE"
ALLOWED_HEADERS = (
    "Authorization, Content-Type, Last-Event-ID, X-Api-Key, X-Auth-Scheme, X-Request-ID"
)
# Seconds a browser may cache a preflight's answer.
PREFLIGHT_MAX_AGE = 600


def install(app: Quart) -> None:
    """Check the token before each request; add the CORS headers after it."""
    app.before_request(authenticate)
    app.after_request(cors)


async def authenticate() -> None:
    tokens = runyard().tokens
    if not tokens or request.method == "OPTIONS":
        return
    if request.path in PUBLIC_PATHS or request.path.startswith("/static/"):
        return
    # Authorization: Bearer, or x-api-key (what langgraph-sdk's api_key sends),
    # or the dashboard's cookie.
    header = request.headers.get("Authorization", "")
    if header[:7].lower() == "bearer ":
        given = header[7:].strip()
    else:
        given = request.headers.get("x-api-key") or request.cookies.get(TOKEN_COOKIE, "")
    found = None
    for token, who in tokens.items():  # every one, so timing says nothing
        if hmac.compare_digest(token.encode(), given.encode()):
            found = who
    if found is None:
        raise Unauthorized("a valid bearer token is required")
    g.owner = found


async def cors(response: Response) -> Response:
    origin = request.headers.get("Origin")
    if origin and origin in runyard().settings.cors_origins:
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Vary"] = "Origin"
        response.headers["Access-Control-Expose-Headers"] = EXPOSED_HEADERS
        if request.method == "OPTIONS":
            response.headers["Access-Control-Allow-Methods"] = ALLOWED_METHODS
            response.headers["Access-Control-Allow-Headers"] = ALLOWED_HEADERS
            response.headers["Access-Control-Max-Age"] = str(PREFLIGHT_MAX_AGE)
    return response
