"""The quart-trio application: the LangGraph runs API over the supervisor.

Handlers parse and validate (:mod:`.schema`), call the supervisor and render
(:mod:`.render`); they never touch the store. Each resource is a blueprint of
plain functions: :mod:`.meta`, :mod:`.assistants`, :mod:`.threads`,
:mod:`.runs`. See ``docs/api.md`` for every endpoint with an example.
"""

from __future__ import annotations

from pathlib import Path

import trio_asyncio
from quart import Quart, Response
from quart_trio import QuartTrio

from ..config import Settings
from ..supervisor import Supervisor
from . import access, errors, metrics
from .assistants import assistants
from .context import EXTENSION, Runyard, supervisor
from .crons import crons
from .docs_page import docs
from .items import items
from .meta import meta
from .runs import runs
from .threads import threads
from .webhooks import webhooks

STATIC = Path(__file__).resolve().parent.parent / "static"


def create_app(supervisor: Supervisor, settings: Settings | None = None) -> Quart:
    """Build the app. The caller owns the supervisor's lifetime (see server.py)."""
    cfg = settings or Settings()
    app = QuartTrio("runyard", static_folder=str(STATIC), static_url_path="/static")
    app.config["MAX_CONTENT_LENGTH"] = cfg.max_body
    app.config["JSONIFY_PRETTYPRINT_REGULAR"] = False
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions[EXTENSION] = Runyard(supervisor, cfg, cfg.bearer_tokens())
    errors.install(app)
    metrics.install(app, supervisor)  # before access: a refused request has an id and a count
    access.install(app)
    app.before_request(_asyncio_loop)
    app.after_request(_close_when_draining)
    for blueprint in (meta, docs, assistants, threads, runs):
        app.register_blueprint(blueprint)
    app.register_blueprint(items)
    app.register_blueprint(crons)
    app.register_blueprint(webhooks)
    return app


async def _asyncio_loop() -> None:
    # Quart runs sync iterables through asyncio helpers; trio-asyncio needs its loop.
    loop = supervisor().loop
    if loop is not None:
        trio_asyncio.current_loop.set(loop)


async def _close_when_draining(response: Response) -> Response:
    if supervisor().draining:
        # Draining: don't let an idle keep-alive connection hold shutdown up.
        response.headers["Connection"] = "close"
    return response
