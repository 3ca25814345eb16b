"""Maps the core's user errors to HTTP 422 with the message (never a 500 for bad input)."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from policies.errors import NotInEffect, PartyError, PolicyError, UnknownProvision


def setup(app: FastAPI) -> None:
    @app.exception_handler(PolicyError)
    async def _policy_error(_req: Request, exc: PolicyError) -> JSONResponse:
        status = 404 if isinstance(exc, UnknownProvision | NotInEffect) or (
            isinstance(exc, PartyError) and "not registered" in str(exc)
        ) else 422
        return JSONResponse(status_code=status, content={"detail": str(exc)})
