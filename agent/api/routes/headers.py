"""Security headers on every API and dashboard response (not on the webhook's hot path, which is JSON only)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from fastapi import FastAPI

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]

# The dashboard is never framed, never sniffed into another type, and leaks no path to other sites.
HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
]
HSTS = (b"strict-transport-security", b"max-age=31536000")
# Dashboard pages run only the product's own script file: markup that slips past escaping (a party or model
# name) cannot run, load from or post to another site. Inline styles stay allowed (the sign-in page has one).
CSP = (b"content-security-policy",
       b"default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
       b"object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
# Swagger UI and ReDoc load their own scripts from a CDN: the policy would blank them.
_NO_CSP = ("/docs", "/redoc")
# Nothing but the product's static files is kept by a browser or proxy cache: a token's secret (POST
# /api/v1/tokens shows it once), the pages and API answers of a signed-in user and export files would otherwise
# stay in the cache of a shared machine after sign-out, and Back would show them again.
NO_STORE = (b"cache-control", b"no-store")
_CACHEABLE = ("/static/", "/favicon.ico")


class SecurityHeaders:
    def __init__(self, app: Callable[..., Awaitable[None]]) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Callable[[], Awaitable[Message]],
                       send: Callable[[Message], Awaitable[None]]) -> None:
        if scope["type"] != "http" or scope["path"] == "/validate":
            await self.app(scope, receive, send)
            return
        extra = [*HEADERS, HSTS] if scope.get("scheme") == "https" else HEADERS
        csp = not scope["path"].startswith(_NO_CSP)
        if not scope["path"].startswith(_CACHEABLE):
            extra = [*extra, NO_STORE]

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = message.get("headers", [])
                present = {k.lower() for k, _v in headers}
                html = any(k.lower() == b"content-type" and v.startswith(b"text/html") for k, v in headers)
                add = [*extra, CSP] if csp and html else extra
                message["headers"] = [*headers, *(h for h in add if h[0] not in present)]
            await send(message)

        await self.app(scope, receive, with_headers)


def setup(app: FastAPI) -> None:
    app.add_middleware(SecurityHeaders)  # type: ignore[arg-type]
