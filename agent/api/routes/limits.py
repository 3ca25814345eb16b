"""Request-body size limits for the API, the dashboard forms and the sign-in form (413, never read whole).

Without a limit every JSON, form and sign-in body was read into memory whatever its size: one 1 GB post to
the public ``/login`` could exhaust the API pod. The admission webhook (``/validate``) keeps its own limit.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from fastapi import FastAPI
from starlette.exceptions import HTTPException

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

MAX_BODY_BYTES = 1024 * 1024  # 1 MiB: far above any JSON body or form of the API and dashboard
# Access-log imports are CSV files, not records: they get more room.
LARGE_BODY_PATHS: dict[str, int] = {"/api/v1/weights/access": 32 * 1024 * 1024}


class BodyTooLarge(HTTPException):
    """Raised from ``receive`` once a body passes its limit; an HTTPException, so FastAPI answers 413 with it."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"body: larger than {limit:,} bytes; send less (split the request)")


def limit_for(path: str) -> int:
    return LARGE_BODY_PATHS.get(path, MAX_BODY_BYTES)


class BodyLimit:
    """Refuse a body whose Content-Length is over the limit at once, and stop reading one that grows past it."""

    def __init__(self, app: Callable[..., Awaitable[None]]) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] == "/validate":
            await self.app(scope, receive, send)
            return
        limit = limit_for(scope["path"])
        declared = next((v for k, v in scope.get("headers", []) if k == b"content-length"), None)
        if declared is not None and declared.strip().isdigit() and int(declared) > limit:
            await _too_large(send, limit)
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge(limit)
            return message

        started = False

        async def tracked(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted, tracked)
        except BodyTooLarge:
            # Raised where no exception handler answers it (a middleware reading the body): answer here.
            if started:
                raise
            await _too_large(send, limit)


async def _too_large(send: Send, limit: int) -> None:
    import json

    body = json.dumps({"detail": BodyTooLarge(limit).detail}).encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close"), (b"x-content-type-options", b"nosniff")]})
    await send({"type": "http.response.body", "body": body})


def setup(app: FastAPI) -> None:
    app.add_middleware(BodyLimit)
