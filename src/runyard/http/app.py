"""The quart-trio application: the LangGraph runs API over the supervisor.

Handlers parse and validate, call the supervisor, and render. They never
touch the store. See ``docs/api.md`` for every endpoint with an example.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import trio_asyncio
from quart import Quart, Response, g, jsonify, request
from quart_trio import QuartTrio

from .. import __version__
from ..config import Settings
from ..errors import Invalid, NotFound, PayloadTooLarge, Unauthorized
from ..model import JSON, CancelReason, Run, RunStatus, run_to_json, thread_to_json
from ..supervisor import RunHandle, Supervisor
from . import errors, openapi, schema
from .sse import feed_response, run_paths, sse_response

STATIC = Path(__file__).resolve().parent.parent / "static"


# Reachable without a token even when tokens are configured: no data behind them.
PUBLIC_PATHS = ("/ok", "/", "/favicon.ico")
TOKEN_COOKIE = "runyard_token"


Handler = Callable[..., Awaitable[Any]]


def create_app(supervisor: Supervisor, settings: Settings | None = None) -> Quart:
    """Build the app. The caller owns the supervisor's lifetime (see server.py)."""
    cfg = settings or Settings()
    tokens = cfg.bearer_tokens()  # token -> owner
    app = QuartTrio("runyard", static_folder=str(STATIC), static_url_path="/static")
    app.config["MAX_CONTENT_LENGTH"] = cfg.max_body
    app.config["JSONIFY_PRETTYPRINT_REGULAR"] = False
    app.json.sort_keys = False  # type: ignore[attr-defined]
    errors.install(app)
    sup = supervisor

    def route(rule: str, *methods: str, summary: str) -> Callable[[Handler], Handler]:
        def register(fn: Handler) -> Handler:
            openapi.describe(app, rule, methods, summary)
            app.add_url_rule(rule, fn.__name__, fn, methods=list(methods))
            return fn

        return register

    async def body() -> JSON:
        length = request.content_length
        if length is not None and length > cfg.max_body:
            raise PayloadTooLarge(f"the request body is larger than {cfg.max_body} bytes")
        return schema.parse_json(await request.get_data(cache=False, as_text=False))

    def owner() -> str:
        return str(g.get("owner", ""))

    @app.before_request
    async def authenticate() -> None:
        if not tokens or request.method == "OPTIONS":
            return
        if request.path in PUBLIC_PATHS or request.path.startswith("/static/"):
            return
        # Authorization: Bearer, or x-api-key (what langgraph-sdk's api_key sends),
        # or the dashboard's cookie (EventSource cannot send headers).
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

    @app.after_request
    async def cors(response: Response) -> Response:
        origin = request.headers.get("Origin")
        if origin and origin in cfg.cors_origins:
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Vary"] = "Origin"
            response.headers["Access-Control-Expose-Headers"] = (
                "Content-Location, Location, Retry-After"
            )
            if request.method == "OPTIONS":
                response.headers["Access-Control-Allow-Methods"] = "GET, POST, DELETE"
                response.headers["Access-Control-Allow-Headers"] = (
                    "Authorization, Content-Type, Last-Event-ID"
                )
                response.headers["Access-Control-Max-Age"] = "600"
        return response

    @app.before_request
    async def asyncio_loop() -> None:
        # Quart runs sync iterables through asyncio helpers; trio-asyncio needs its loop.
        if sup.loop is not None:
            trio_asyncio.current_loop.set(sup.loop)

    @app.after_request
    async def closing(response: Response) -> Response:
        if sup.draining:
            # Draining: don't let an idle keep-alive connection hold shutdown up.
            response.headers["Connection"] = "close"
        return response

    # -- service --------------------------------------------------------------

    @route("/ok", "GET", summary="Liveness")
    async def ok() -> Response:
        return jsonify({"ok": True})

    @route("/info", "GET", summary="Version, capabilities and durability mode")
    async def info() -> Response:
        return jsonify(
            {
                "name": "runyard",
                "version": __version__,
                "durability": cfg.durability,
                "accepting_runs": sup.accepting,
                "flags": {"assistants": True, "crons": False, "langsmith": False},
                "capabilities": ["threads", "runs", "stream", "wait", "join", "cancel",
                                 "resumable_streams"],
            }
        )  # fmt: skip

    @route("/openapi.json", "GET", summary="This API as an OpenAPI 3.1 document")
    async def openapi_json() -> Response:
        return jsonify(openapi.document(app, __version__))

    @route("/", "GET", summary="The live dashboard (HTML)")
    async def dashboard() -> Response:
        response = await app.send_static_file("index.html")
        response.headers["Cache-Control"] = "no-cache"
        return response

    # -- assistants -------------------------------------------------------------

    def assistant_json(name: str) -> dict[str, JSON]:
        agent = sup.agents.get(name)
        assert agent is not None
        return {
            "assistant_id": agent.name,
            "graph_id": agent.name,
            "name": agent.name,
            "description": agent.description or None,
            "config": {},
            "context": {},
            "metadata": {"runtime": "asyncio" if agent.asyncio else "trio"},
            "version": 1,
            "created_at": "1970-01-01T00:00:00+00:00",
            "updated_at": "1970-01-01T00:00:00+00:00",
        }

    @route("/assistants/search", "POST", summary="List the registered agents as assistants")
    async def assistants_search() -> Response:
        b = schema.body_object(await body())
        limit, offset = schema.paging(b)
        graph_id = schema.field(b, "graph_id", str, None)
        names = [n for n in sup.agents.names() if graph_id in (None, n)]
        return jsonify([assistant_json(n) for n in names[offset : offset + limit]])

    @route("/assistants/<assistant_id>", "GET", summary="One registered agent")
    async def assistant_get(assistant_id: str) -> Response:
        if sup.agents.get(assistant_id) is None:
            raise NotFound(f"assistant {assistant_id!r} not found")
        return jsonify(assistant_json(assistant_id))

    # -- threads ----------------------------------------------------------------

    @route("/threads", "POST", summary="Create a thread")
    async def thread_create() -> Response:
        b = schema.body_object(await body())
        chosen = schema.field(b, "thread_id", str, "")
        thread = await sup.create_thread(
            thread_id=schema.valid_thread_id(chosen) if chosen else None,
            metadata=schema.metadata(b, cfg.max_metadata_bytes),
            if_exists=schema.choice(b, "if_exists", schema.IF_EXISTS, "raise"),
            owner=owner(),
        )
        return jsonify(thread_to_json(thread))

    @route("/threads/search", "POST", summary="Search threads by metadata and status")
    async def thread_search() -> Response:
        b = schema.body_object(await body())
        limit, offset = schema.paging(b)
        status = schema.choice(b, "status", ("idle", "busy", "interrupted", "error", ""), "")
        threads = await sup.search_threads(
            owner=owner(),
            metadata=schema.field(b, "metadata", dict, {}),
            status=status or None,
            limit=limit,
            offset=offset,
        )
        return jsonify([thread_to_json(t) for t in threads])

    @route("/threads/<thread_id>", "GET", summary="Read a thread")
    async def thread_get(thread_id: str) -> Response:
        return jsonify(thread_to_json(await sup.get_thread(thread_id, owner=owner())))

    @route("/threads/<thread_id>", "DELETE", summary="Delete a thread (cancels its runs first)")
    async def thread_delete(thread_id: str) -> Response:
        await sup.delete_thread(thread_id, owner=owner())
        return Response(b"", status=204)

    @route("/threads/<thread_id>/state", "GET", summary="The output of the thread's last success")
    async def thread_state(thread_id: str) -> Response:
        thread = await sup.get_thread(thread_id, owner=owner())
        return jsonify(
            {
                "values": thread.values if thread.values is not None else {},
                "next": [],
                "tasks": [],
                "metadata": thread.metadata,
                "created_at": thread_to_json(thread)["updated_at"],
                "checkpoint": {"thread_id": thread_id, "checkpoint_ns": "", "checkpoint_id": None},
                "parent_checkpoint": None,
                "interrupts": [],
            }
        )

    # -- runs ---------------------------------------------------------------------

    async def start(thread_id: str | None, *, streaming: bool) -> tuple[RunHandle, bool]:
        parsed = schema.run_create(
            await body(),
            thread_id=thread_id,
            owner=owner(),
            streaming=streaming,
            max_metadata=cfg.max_metadata_bytes,
        )
        handle = await sup.create_run(parsed.request)
        return handle, parsed.on_disconnect == "cancel"

    def located(response: Response, run: Run, *, join: bool = False) -> Response:
        content_location, stream_location = run_paths(run)
        response.headers["Content-Location"] = content_location
        response.headers["Location"] = f"{content_location}/join" if join else stream_location
        return response

    async def create(thread_id: str | None) -> Response:
        handle, _ = await start(thread_id, streaming=False)
        return located(jsonify(run_to_json(handle.run)), handle.run)

    async def stream(thread_id: str | None) -> Response:
        handle, cancel = await start(thread_id, streaming=True)
        return sse_response(
            sup,
            handle.run,
            sup.subscribe(handle.run_id, limited=True),
            modes=handle.request.stream_mode,
            cancel_on_disconnect=cancel,
            heartbeat=cfg.heartbeat,
        )

    async def wait(thread_id: str | None) -> Response:
        handle, cancel = await start(thread_id, streaming=True)
        # If the client leaves, quart-trio cancels this handler; the run goes too.
        run = await sup.wait_run(
            handle.run_id,
            owner=owner(),
            cancel_on_exit=CancelReason.DISCONNECT if cancel else None,
        )
        return located(jsonify(final_body(run)), run, join=True)

    @route("/threads/<thread_id>/runs", "POST", summary="Start a run in the background")
    async def thread_run_create(thread_id: str) -> Response:
        return await create(thread_id)

    @route("/threads/<thread_id>/runs/stream", "POST", summary="Start a run and stream it (SSE)")
    async def thread_run_stream(thread_id: str) -> Response:
        return await stream(thread_id)

    @route("/threads/<thread_id>/runs/wait", "POST", summary="Start a run and wait for its end")
    async def thread_run_wait(thread_id: str) -> Response:
        return await wait(thread_id)

    @route("/runs", "POST", summary="Start a run on a new thread, in the background")
    async def run_create() -> Response:
        return await create(None)

    @route("/runs/stream", "POST", summary="Start a run on a new thread and stream it (SSE)")
    async def run_stream() -> Response:
        return await stream(None)

    @route("/runs/wait", "POST", summary="Start a run on a new thread and wait for its end")
    async def run_wait() -> Response:
        return await wait(None)

    async def listed(thread_id: str | None) -> Response:
        limit, offset = schema.paging(request.args)
        status = request.args.get("status") or None
        if status is not None and status not in {s.value for s in RunStatus}:
            raise Invalid("query parameter 'status' is not a run status")
        runs = await sup.list_runs(
            thread_id, status=status, limit=limit, offset=offset, owner=owner()
        )
        return jsonify([run_to_json(r) for r in runs])

    @route("/threads/<thread_id>/runs", "GET", summary="List a thread's runs, newest first")
    async def run_list(thread_id: str) -> Response:
        return await listed(thread_id)

    @route("/runs", "GET", summary="List runs of every thread, newest first (runyard)")
    async def run_list_all() -> Response:
        return await listed(None)

    @route("/runs/<run_id>", "GET", summary="Read a run by its id alone (runyard)")
    async def run_get_by_id(run_id: str) -> Response:
        return jsonify(run_to_json(await sup.get_run(run_id, owner=owner())))

    @route("/runs/feed", "GET", summary="Live feed of run status changes, SSE (runyard)")
    async def run_feed() -> Response:
        limit, _ = schema.paging(request.args, default_limit=50)
        return feed_response(sup, await sup.list_runs(None, limit=limit, owner=owner()),
                             owner=owner(), heartbeat=cfg.heartbeat)  # fmt: skip

    @route("/threads/<thread_id>/runs/<run_id>", "GET", summary="Read a run")
    async def run_get(thread_id: str, run_id: str) -> Response:
        return jsonify(run_to_json(await sup.get_run(run_id, thread_id=thread_id, owner=owner())))

    @route("/threads/<thread_id>/runs/<run_id>", "DELETE", summary="Delete a finished run")
    async def run_delete(thread_id: str, run_id: str) -> Response:
        await sup.delete_run(run_id, thread_id=thread_id, owner=owner())
        return Response(b"", status=204)

    @route("/threads/<thread_id>/runs/<run_id>/join", "GET", summary="Wait for a run's end")
    async def run_join(thread_id: str, run_id: str) -> Response:
        run = await sup.wait_run(run_id, thread_id=thread_id, owner=owner())
        return located(jsonify(final_body(run)), run, join=True)

    @route("/threads/<thread_id>/runs/<run_id>/stream", "GET", summary="Join a run's stream")
    async def run_join_stream(thread_id: str, run_id: str) -> Response:
        run = await sup.get_run(run_id, thread_id=thread_id, owner=owner())
        after = schema.last_event_id(request.headers.get("Last-Event-ID"))
        raw_modes = [m for m in request.args.getlist("stream_mode") if m]
        modes = schema.stream_modes(raw_modes, "stream_mode") if raw_modes else None
        cancel = schema.flag(request.args.get("cancel_on_disconnect"), "cancel_on_disconnect")
        if after is not None and run.status.terminal and after >= await sup.last_seq(run_id):
            # The client has the whole log, end included; 204 stops an EventSource.
            return located(Response(b"", status=204), run)
        # Past the end of a live run, this waits for ids > after: never a duplicate.
        return sse_response(
            sup,
            run,
            sup.subscribe(run_id, -1 if after is None else after, limited=True),
            modes=modes,
            cancel_on_disconnect=cancel,
            heartbeat=cfg.heartbeat,
        )

    @route("/threads/<thread_id>/runs/<run_id>/cancel", "POST", summary="Cancel a run")
    async def run_cancel(thread_id: str, run_id: str) -> Response:
        wait_for_end = schema.flag(request.args.get("wait"), "wait")
        action = request.args.get("action") or "interrupt"
        if action not in schema.CANCEL_ACTIONS:
            raise Invalid("query parameter 'action' must be interrupt or rollback")
        reason = CancelReason.ROLLBACK if action == "rollback" else CancelReason.USER
        run = await sup.cancel_run(
            run_id, thread_id=thread_id, reason=reason, wait=wait_for_end, owner=owner()
        )
        response = jsonify(run_to_json(run))
        response.status_code = 200 if wait_for_end else 202
        return response

    return app


def final_body(run: Run) -> JSON:
    """What /wait and /join answer: the values on success, ``__error__`` otherwise."""
    if run.status is RunStatus.SUCCESS:
        return run.output
    if run.error is not None:
        return {"__error__": run.error.to_json()}
    reason = run.cancel_reason or CancelReason.SHUTDOWN
    message = f"the run was {run.status} ({reason})"
    return {"__error__": {"error": "RunInterrupted", "message": message}}
