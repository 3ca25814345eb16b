"""Maps the core's user errors to HTTP 4xx with the message in the API's words (never a 500 for bad input).

A well-formed request that clashes with a stored record (:class:`agent.parties.Conflict`) is a 409; a name that
is not registered a 404 when the path names it (a body field or query parameter that names one is a 422); a date
the rules are not in effect on is a 422 on the date's field, on the API and the dashboard's pages alike (their dates
are in bodies, forms and queries, never in a path); any other user error a 422. Every message names the JSON field
or query parameter, not the CLI option (:func:`agent.api.fields.api_detail`), HTTPExceptions raised by the routes
included.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import DataError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from agent.api.fields import MAX_ECHOED, MAX_OFFSET, api_detail, error_response, route_renames
from agent.api.routes.auth import wants_html
from agent.parties import Conflict
from policies.errors import NotInEffect, PartyError, PolicyError, UnknownProvision


def setup(app: FastAPI) -> None:
    @app.exception_handler(PolicyError)
    async def _policy_error(_req: Request, exc: PolicyError) -> JSONResponse:
        if isinstance(exc, NotInEffect):
            # Nothing the path names is missing: the date sent is before the rules (or after them). The dashboard's
            # pages too (its error page shows this message at this status, as of (date) for as_of).
            return JSONResponse(status_code=422,
                                content={"detail": _date_named(_req, api_detail(str(exc), route_renames(_req)))})
        status = 404 if isinstance(exc, UnknownProvision) or (
            isinstance(exc, PartyError) and "not registered" in str(exc) and _names_the_path(_req, exc)
        ) else 409 if isinstance(exc, Conflict) else 422
        return error_response(_req, status, exc)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(req: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 404 and "endpoint" not in req.scope and wants_html(req.url.path, req.headers):
            # No route at this address, asked for by a browser on the dashboard: a page with the navigation.
            from agent.api.routes.dashboard import refused_page

            return refused_page(req, 404, "Not found", f"There is no dashboard page at {req.url.path[:200]}.",
                                "Use the navigation above, or go back to the caps overview.")
        if exc.status_code == 400 and exc.detail == _UNPARSED_BODY:
            return _unparsed_body(exc.__cause__)
        if isinstance(exc.detail, str):
            exc.detail = api_detail(exc.detail, route_renames(req))
        return await http_exception_handler(req, exc)

    @app.exception_handler(DataError)
    async def _data_error(_req: Request, exc: DataError) -> JSONResponse:
        # A value the database cannot hold (e.g. NUL in PostgreSQL text) is bad input, not a server fault.
        return JSONResponse(status_code=422, content={"detail": f"a value cannot be stored: {_first_line(exc)}"})

    @app.exception_handler(UnicodeEncodeError)
    async def _bad_unicode(_req: Request, exc: UnicodeEncodeError) -> JSONResponse:
        return JSONResponse(status_code=422, content={"detail": f"a value is not valid UTF-8 text ({exc.reason})"})

    @app.exception_handler(UnicodeDecodeError)
    async def _not_utf8_handler(_req: Request, exc: UnicodeDecodeError) -> JSONResponse:
        return _not_utf8(exc)

    @app.exception_handler(OverflowError)
    async def _overflow(_req: Request, exc: OverflowError) -> JSONResponse:
        # A 30-digit id or offset, or a date past 9999-12-31 once a day is added: nothing stored can match. The
        # routes bound what they know; this answers what one missed, naming the parameter when the request shows
        # it, never with the driver's words ("Python int too large to convert to SQLite INTEGER").
        return JSONResponse(status_code=422, content={"detail": _out_of_range(_req)})

    @app.exception_handler(RequestValidationError)
    async def _invalid(_req: Request, exc: RequestValidationError) -> JSONResponse:
        unread = _not_json(_req, exc.errors())
        if unread is not None:
            return unread
        # FastAPI echoes the input back; 1e400 or NaN in it is not JSON, which made the 422 itself a 500. A long
        # input (a 400-digit number, a 100 KB string, a 50,000-item list) is echoed clipped.
        return JSONResponse(status_code=422,
                            content={"detail": [_clipped(e) for e in jsonable_encoder(_finite(exc.errors()))]})

    @app.exception_handler(OperationalError)
    async def _store_unavailable(_req: Request, exc: OperationalError) -> JSONResponse:
        return JSONResponse(status_code=503, content={"detail": f"store unavailable: {_first_line(exc)}"},
                            headers={"retry-after": "5"})

    # PolicyError answers {"detail": "<message>"}: document that shape next to FastAPI's list form, so
    # the OpenAPI document describes the 422s the API actually sends.
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        spec = generate()
        props = spec.get("components", {}).get("schemas", {}).get("HTTPValidationError", {}).get("properties", {})
        if "detail" in props and "anyOf" not in props["detail"]:
            props["detail"] = {"title": "Detail", "anyOf": [
                props["detail"], {"type": "string", "description": "The field at fault and how to fix it"}]}
        _document_errors(spec)
        return spec

    app.openapi = openapi  # type: ignore[method-assign]


# FastAPI's answer when a JSON body cannot be decoded at all (not UTF-8, nested past the recursion limit): a 400
# that names nothing; the exception it raised is its __cause__.
_UNPARSED_BODY = "There was an error parsing the body"


def _not_utf8(exc: UnicodeDecodeError) -> JSONResponse:
    return JSONResponse(status_code=422, content={"detail": f"body: not UTF-8 text (byte {exc.start}: {exc.reason})"})


def _unparsed_body(cause: BaseException | None) -> JSONResponse:
    if isinstance(cause, UnicodeDecodeError):
        return _not_utf8(cause)
    if isinstance(cause, RecursionError):
        return JSONResponse(status_code=400, content={"detail": "body: JSON nested too deeply to parse"})
    if isinstance(cause, ValueError) and "digits" in str(cause):
        # Python's JSON reader refuses an integer of more than sys.get_int_max_str_digits() digits.
        return JSONResponse(status_code=400, content={
            "detail": "body: a number has too many digits to read; write it in e-notation (e.g. 1e26)"})
    reason = f" ({type(cause).__name__})" if cause is not None else ""
    return JSONResponse(status_code=400, content={"detail": f"body: cannot be parsed{reason}"})


ERROR_SCHEMA = {"title": "ErrorDetail", "type": "object", "required": ["detail"],
                "properties": {"detail": {"title": "Detail", "type": "string",
                                          "description": "The field at fault and how to fix it"}}}
# The error answers every operation of the API may give besides its 2xx and 422 (FastAPI documents only those):
# described so that a client (and a contract test) knows them and the shape of their body.
_ERRORS = {
    "400": "The body cannot be parsed (e.g. JSON nested too deeply)",
    "401": "Authentication required, or the credential is not valid",
    "403": "The caller's role may not do this",
    "404": "A record the request names is not registered",
    "409": "The request clashes with a stored record",
    "413": "The body is larger than the limit",
    "415": "The body was not sent as JSON (Content-Type: application/json)",
    "503": "The store is unavailable; retry later",
}
_WRITES = {"post", "put", "patch", "delete"}


def _document_errors(spec: dict[str, Any]) -> None:
    spec.setdefault("components", {}).setdefault("schemas", {}).setdefault("ErrorDetail", ERROR_SCHEMA)
    ref = {"$ref": "#/components/schemas/ErrorDetail"}
    for path, operations in spec.get("paths", {}).items():
        for method, op in operations.items():
            if method not in _WRITES | {"get", "head", "options"}:
                continue
            if path == "/validate":  # the webhook: a review it cannot read, or too large a one (both a 400)
                codes = {"400"}
            else:
                codes = {"401", "403", "404", "503"}
                if method in _WRITES:
                    codes.add("409")
                if "requestBody" in op:
                    codes |= {"400", "413"}
                    if "application/json" in op["requestBody"].get("content", {}):
                        codes.add("415")
            responses = op.setdefault("responses", {})
            for code in sorted(codes):
                responses.setdefault(code, {"description": _ERRORS[code],
                                            "content": {"application/json": {"schema": ref}}})


def _names_the_path(req: Request, exc: Exception) -> bool:
    """Whether an unregistered name is the one in the request's path (``GET /parties/{name}``: a 404) rather than
    one a body field or query parameter refers to (``"holder": "Nobody"``: a bad field value, a 422)."""
    message = str(exc)
    return any(isinstance(v, str) and v and (f"'{v}'" in message or f'"{v}"' in message or f" {v}:" in message
                                             or message.startswith(f"{v}:"))
               for v in req.path_params.values())


_NOT_IN_EFFECT_ON = re.compile(r"not in effect on (\d{4}-\d{2}-\d{2})")


def _date_named(req: Request, message: str) -> str:
    """``message`` (in the API's words) starting with the query parameter that gave the date the rules are not
    in effect on, when it names none itself (the packs name the provision: ``eccn-4e091: not in effect on
    1900-01-01``)."""
    head = message.partition(":")[0]
    m = _NOT_IN_EFFECT_ON.search(message)
    if m is None or head in req.query_params:
        return message
    named = [k for k, v in req.query_params.items() if v.strip() == m[1]]
    return f"{named[0]}: {message}" if named else message


def _out_of_range(req: Request) -> str:
    """What an ``OverflowError`` answers: the path or query parameter with a number or a date too far out."""
    sent = [*req.path_params.items(), *req.query_params.items()]
    for name, value in sent:
        text = str(value).strip()
        if text.isascii() and text.isdigit() and int(text) > MAX_OFFSET:
            return f"{name}: {text[:40]} is out of range (at most {MAX_OFFSET})"
        if re.fullmatch(r"(9999|0001)-\d\d-\d\d", text):
            return f"{name}: {text} is too near the start or end of the calendar to evaluate; use a nearer date"
    return "a number or date in the request is out of range; use a smaller number or a nearer date"


def _is_json(content_type: str) -> bool:
    """Whether FastAPI reads a body of this Content-Type as JSON (``application/json``, ``application/*+json``)."""
    mime = content_type.partition(";")[0].strip().lower()
    return mime == "application/json" or (mime.startswith("application/") and mime.endswith("+json"))


def _not_json(req: Request, errors: Any) -> JSONResponse | None:
    """The answer to a JSON body that was not read as JSON because of its Content-Type (``curl -d`` sends
    ``application/x-www-form-urlencoded``; none at all is not JSON either): a 415 naming the header to send, where
    FastAPI said "Input should be a valid dictionary or object to extract fields from". None otherwise."""
    sent = req.headers.get("content-type", "")
    body = [e for e in errors if isinstance(e, dict) and tuple(e.get("loc", ())) == ("body",)]
    if not body or _is_json(sent) or not _is_json(_body_media_type(req)):
        return None  # the route reads another type (`POST /weights/access` takes text/csv)
    if all(e.get("type") == "missing" for e in body):
        return JSONResponse(status_code=422, content={
            "detail": "body: missing; send a JSON object with Content-Type: application/json"})
    shown = f"Content-Type {sent.partition(';')[0].strip()[:100]}" if sent.strip() else "no Content-Type"
    return JSONResponse(status_code=415, content={
        "detail": f"body: {shown} is not read as JSON; send the body as JSON with Content-Type: application/json"})


def _body_media_type(req: Request) -> str:
    """The media type the matched route reads its body as (FastAPI's ``Body(media_type=...)``), JSON by default."""
    field = getattr(req.scope.get("route"), "body_field", None)
    return str(getattr(getattr(field, "field_info", None), "media_type", None) or "application/json")


def _finite(x: Any) -> Any:
    """``x`` with every non-finite float (1e400, NaN) replaced by its text, so it can be sent as JSON."""
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_finite(v) for v in x]
    return x


def _clipped(error: Any) -> Any:
    """A FastAPI validation error whose ``input`` is clipped when its JSON text is longer than
    :data:`MAX_ECHOED`: its start, then how long it was, as text, with ``"input_clipped": true``;
    ``loc``, ``msg`` and ``ctx`` unchanged."""
    if not isinstance(error, dict) or "input" not in error:
        return error
    value = error["input"]
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    if len(text) <= MAX_ECHOED:
        return error
    what = "characters" if isinstance(value, str) else "characters of JSON"
    return {**error, "input": f"{text[:MAX_ECHOED]}... (clipped: {len(text)} {what})", "input_clipped": True}


def _first_line(exc: Exception) -> str:
    lines = str(getattr(exc, "orig", exc)).strip().splitlines()
    return lines[0][:200] if lines else type(exc).__name__
