"""The FastAPI application: API under /api/v1, the dashboard, the admission webhook, health and metrics.

Routers are discovered: every module in ``agent/api/routes`` that defines ``router`` is included, so
each area adds its endpoints without editing this file.
"""

from __future__ import annotations

import importlib
import logging
import pkgutil
import re
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from typing import Any

from fastapi import FastAPI
from fastapi.responses import PlainTextResponse, RedirectResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from starlette.datastructures import URL
from starlette.routing import BaseRoute, Match

import agent.api.routes as routes_pkg
from agent.store import get_engine
from policies.errors import PolicyError

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


def _flat(routes: list[BaseRoute]) -> Iterator[Any]:
    """The app's routes, those of its included routers too (FastAPI keeps an included router as one entry)."""
    for r in routes:
        contexts = getattr(r, "effective_route_contexts", None)
        yield from (contexts() if contexts is not None else (r,))


def _allowed_methods(routes: list[BaseRoute], scope: Scope) -> str:
    """Every method some route takes at this path (HEAD wherever GET), for a 405's ``Allow``."""
    methods: set[str] = set()
    for r in _flat(routes):
        if r.matches(scope)[0] != Match.NONE:
            methods |= set(getattr(r, "methods", None) or ())
    if "GET" in methods:
        methods.add("HEAD")
    return ", ".join(sorted(methods))


# GETs that build, sign and audit an export: HEAD is not offered (it would do all of it to send no body).
_BUILDS_ON_GET = re.compile(r"^(?:/api/v1/exports/[^/]+|/exports/[^/]+/download)$")


class HttpMethods:
    """HTTP semantics the routing leaves out (RFC 9110), inside the credential check (added before the areas'
    middleware, so innermost): HEAD answers as GET does, without the body (it was a 405 everywhere, /healthz
    too); a 405's ``Allow`` lists every method of the path (Starlette named the first route's only: ``GET`` for
    ``/api/v1/parties``, which takes POST); and ``/api/v1/LIST/`` goes to ``/api/v1/LIST`` with a 307 where a
    route's ``{name:path}`` would otherwise read the slash as an empty name (``/parties/``, ``/models/``), as
    the router does for every other list."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]]) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        routes: list[BaseRoute] = scope["app"].router.routes
        path: str = scope["path"]
        if path.startswith("/api/v1/") and path.endswith("/"):
            bare = path.rstrip("/")
            if any(getattr(r, "path", None) == bare and not getattr(r, "param_convertors", None)
                   for r in _flat(routes)):
                url = URL(scope={**scope, "path": bare, "raw_path": bare.encode()})
                await RedirectResponse(str(url), status_code=307)(scope, receive, send)
                return
        head = scope["method"] == "HEAD"
        if head and _BUILDS_ON_GET.match(path):
            # An export is built, signed and audited on GET: a link checker's HEAD would record exports never
            # delivered. Not offered.
            await PlainTextResponse("Method Not Allowed", status_code=405, headers={"allow": "GET"})(
                scope, receive, send)
            return
        if head:
            scope = {**scope, "method": "GET"}

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] == 405 and (
                    allowed := _allowed_methods(routes, scope)):  # a mount (/static) lists none: its own stays
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"allow"]
                message["headers"] = [*headers, (b"allow", allowed.encode())]
            elif head and message["type"] == "http.response.body":
                if message.get("more_body"):
                    return  # the body is not sent; its length stays in the GET's content-length
                message = {"type": "http.response.body", "body": b"", "more_body": False}
            await send(message)

        await self.app(scope, receive, sending)


def _probes(app: FastAPI, database_url: str | None) -> None:
    """/healthz (the process answers) and /readyz (it can decide: the store answers, and the policy packs and the
    catalog load)."""

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> PlainTextResponse:
        return PlainTextResponse("ok")

    @app.get("/readyz", include_in_schema=False)
    def readyz() -> PlainTextResponse:
        from agent.kb import catalog
        from agent.packs import registry

        # The probe is served without credentials (and the API's through its Ingress): it says what is wrong, and the
        # log says where (a file and field, a database role or host), once for each new reason.
        try:
            # Loaded as every review loads them (cached once they load): a replica that refuses every review with
            # "configuration error" must not pass readiness and replace good replicas in a rolling update.
            registry()
            catalog()
        except PolicyError as exc:
            _log_unready("the policy packs or the catalog do not load", str(exc))
            return PlainTextResponse("not ready: configuration error (the policy packs or the catalog do not load; "
                                     "the log names the file and field)", status_code=503)
        try:
            with get_engine(database_url).connect() as conn:
                conn.execute(text("SELECT 1"))
        except SQLAlchemyError as exc:
            _log_unready("the store is unavailable", str(exc).splitlines()[0])
            return PlainTextResponse("not ready: store unavailable (the log says why)", status_code=503)
        _unready_said.clear()
        return PlainTextResponse("ready")


_unready_said: set[str] = set()  # the reasons /readyz has logged since it was last ready
_log = logging.getLogger("veu.api")


def _log_unready(what: str, why: str) -> None:
    if why not in _unready_said:
        _unready_said.add(why)
        _log.error("not ready: %s: %s", what, why)


def create_app(database_url: str | None = None, *, webhook: bool = True) -> FastAPI:
    """The API, dashboard and /metrics, and (unless ``webhook`` is false) POST /validate on the same port."""
    app = FastAPI(
        title="veu-governor",
        version="0.1.0",
        description=(
            "Export-control governance for clouds that train AI models (BIS AI Diffusion / Due Diligence rules)."
        ),
    )
    app.state.database_url = database_url
    app.state.serve_webhook = webhook

    _probes(app, database_url)

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    app.add_middleware(HttpMethods)  # first, so innermost: after the credential check
    for m in sorted(pkgutil.iter_modules(routes_pkg.__path__), key=lambda m: m.name):
        if m.name.startswith("_"):
            continue
        mod = importlib.import_module(f"{routes_pkg.__name__}.{m.name}")
        router = getattr(mod, "router", None)
        if router is not None:
            app.include_router(router)
        setup = getattr(mod, "setup", None)
        if setup is not None:
            setup(app)
    return app


def create_webhook_app(database_url: str | None = None) -> FastAPI:
    """Only the admission webhook and the probes: what a webhook-only port exposes (no API, no dashboard)."""
    from controllers.webhook import ValidateEndpoint
    from controllers.webhook import router as webhook_router

    app = FastAPI(title="veu-governor webhook", version="0.1.0", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.database_url = database_url

    _probes(app, database_url)

    app.include_router(webhook_router)
    # POST /validate answered ahead of the routing (the same answer as the route's; see ValidateEndpoint).
    app.add_middleware(ValidateEndpoint, database_url=database_url)
    return app
