"""The FastAPI application: API under /api/v1, the dashboard, the admission webhook, health and metrics.

Routers are discovered: every module in ``agent/api/routes`` that defines ``router`` is included, so
each area adds its endpoints without editing this file.
"""

from __future__ import annotations

import importlib
import pkgutil

from fastapi import FastAPI
from fastapi.responses import PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

import agent.api.routes as routes_pkg
from agent.store import get_engine


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

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> PlainTextResponse:
        return PlainTextResponse("ok")

    @app.get("/readyz", include_in_schema=False)
    def readyz() -> PlainTextResponse:
        with get_engine(database_url).connect() as conn:
            conn.execute(text("SELECT 1"))
        return PlainTextResponse("ready")

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

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

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> PlainTextResponse:
        return PlainTextResponse("ok")

    @app.get("/readyz", include_in_schema=False)
    def readyz() -> PlainTextResponse:
        with get_engine(database_url).connect() as conn:
            conn.execute(text("SELECT 1"))
        return PlainTextResponse("ready")

    app.include_router(webhook_router)
    # POST /validate answered ahead of the routing (the same answer as the route's; see ValidateEndpoint).
    app.add_middleware(ValidateEndpoint, database_url=database_url)
    return app
