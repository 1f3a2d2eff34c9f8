"""Routes declared with what they take and what they answer.

A handler module registers its functions through :class:`Routes`::

    @route("/threads", "POST", summary="Create a thread", body=ThreadCreate,
           answers={200: shapes.Thread}, raises=(Conflict,))
    async def create(body: ThreadCreate) -> Response: ...

The declaration is the route's contract. Before the handler runs, the body is
read (:func:`.context.body`) and checked against ``body``, the query string
against ``query`` (:mod:`.schema`); the handler gets the checked models as its
``body`` and ``query`` arguments, so what it uses is what was checked. The same
declaration is what ``/openapi.json`` describes (:mod:`.openapi`): the models,
the answers by status, and the statuses of the errors the route ``raises``
(each error type's status is in :mod:`.errors`, the one place).

Why not quart-schema, which does much of this: it reads bodies with
``request.get_json()``, which skips runyard's own decoding (a body without a
JSON content type, as ``curl -d`` sends; the depth, surrogate and NaN checks;
the size check before reading), answers its own 400s, and serves its pages
from a CDN. What remains here is a small wrapper on pydantic.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, TypeVar

from flask.sansio.app import App
from pydantic import BaseModel
from quart import Blueprint, request

from ..errors import RunyardError
from . import schema
from .context import body as read_body
from .context import settings

Handler = TypeVar("Handler", bound=Callable[..., Awaitable[Any]])

# Where one app's operations live, keyed by (rule, method).
OPERATIONS_KEY = "runyard.operations"


@dataclasses.dataclass(frozen=True, slots=True)
class Media:
    """An answer that is not a JSON document: its media type, or None for no body."""

    type: str | None
    description: str


@dataclasses.dataclass(frozen=True, slots=True)
class Json:
    """A JSON answer: its shape (a type pydantic describes) and what it is."""

    shape: Any
    description: str


NO_BODY = Media(None, "No body")
EVENT_STREAM = Media("text/event-stream", "Server-Sent Events: event, data and id frames")
HTML = Media("text/html", "An HTML page")
# What a route declared without answers says of its 200: nothing more.
UNDESCRIBED = Media(None, "OK")


@dataclasses.dataclass(frozen=True, slots=True)
class Header:
    """A request header a route reads: its name, its JSON schema, what it means,
    and the error a value outside the schema gets (None: such a value is ignored)."""

    name: str
    schema: dict[str, Any]
    description: str
    refused_with: type[RunyardError] | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Operation:
    """One method of one route, as declared: what it takes, answers and raises.

    ``answers`` maps a status to a JSON shape (a type, or :class:`Json` with a
    description) or a :class:`Media`. ``stored``: the route reads or writes
    the store, so a store failure is its 503.
    """

    summary: str
    body: type[schema.Body] | None = None
    query: type[schema.Query] | None = None
    headers: tuple[Header, ...] = ()
    answers: Mapping[int, Any] = dataclasses.field(default_factory=lambda: {200: UNDESCRIBED})
    raises: tuple[type[RunyardError], ...] = ()
    stored: bool = True


class Routes:
    """Registers handlers on a blueprint, each with its :class:`Operation`.

    Stack two routes on one handler to serve a thread route and its thread-less
    form: the short form passes ``defaults={"thread_id": None}``.
    """

    def __init__(self, blueprint: Blueprint) -> None:
        self.blueprint = blueprint
        # One checking view per handler and models, so stacked routes share an endpoint.
        self._views: dict[tuple[Any, ...], Callable[..., Awaitable[Any]]] = {}

    def __call__(
        self,
        rule: str,
        *methods: str,
        summary: str,
        defaults: dict[str, Any] | None = None,
        body: type[schema.Body] | None = None,
        query: type[schema.Query] | None = None,
        headers: tuple[Header, ...] = (),
        answers: Mapping[int, Any] | None = None,
        raises: tuple[type[RunyardError], ...] = (),
        stored: bool = True,
    ) -> Callable[[Handler], Handler]:
        operation = Operation(
            summary, body, query, headers, answers or {200: UNDESCRIBED}, raises, stored
        )

        def register(handler: Handler) -> Handler:
            key = (handler, body, query)
            view = self._views.get(key)
            if view is None:
                view = self._views[key] = _checked(handler, body, query)
            self.blueprint.add_url_rule(
                rule, view_func=view, methods=list(methods), defaults=defaults or {}
            )
            self.blueprint.record(
                lambda state: _describe(
                    state.app, (state.url_prefix or "").rstrip("/") + rule, methods, operation
                )
            )
            return handler

        return register


def _checked(
    handler: Callable[..., Awaitable[Any]],
    body: type[BaseModel] | None,
    query: type[BaseModel] | None,
) -> Callable[..., Awaitable[Any]]:
    """``handler`` called with its checked ``query`` and ``body`` (when it takes them)."""
    if body is None and query is None:
        return handler

    @functools.wraps(handler)
    async def view(**kwargs: Any) -> Any:
        if query is not None:
            kwargs["query"] = schema.parse_query(query, request.args)
        if body is not None:
            limit = {schema.MAX_METADATA: settings().max_metadata_bytes}
            kwargs["body"] = schema.parse(body, await read_body(), context=limit)
        return await handler(**kwargs)

    return view


def _describe(app: App, rule: str, methods: Iterable[str], operation: Operation) -> None:
    operations: dict[tuple[str, str], Operation] = app.extensions.setdefault(OPERATIONS_KEY, {})
    for method in methods:
        operations[(rule, method)] = operation


def operations(app: App) -> dict[tuple[str, str], Operation]:
    """The app's declared operations by (rule, method)."""
    found: dict[tuple[str, str], Operation] = app.extensions.get(OPERATIONS_KEY, {})
    return found
