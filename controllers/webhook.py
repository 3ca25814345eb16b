"""The validating admission webhook: ``POST /validate`` speaking admission.k8s.io/v1 AdmissionReview.

The request body is read with a size limit (``VEU_WEBHOOK_MAX_BYTES``, default 3 MiB, the API server's
own request limit), parsed, and handed to :func:`agent.cases.evaluate_review` in a worker thread. A body
that is not an AdmissionReview gets a clear HTTP 400; a review whose object cannot be read gets a denial
that says why (``DENY_INVALID``); nothing produces a 500. When the store cannot be reached the webhook
follows ``VEU_WEBHOOK_FAILURE_MODE``: ``deny`` (default, fail closed like Kueue's own webhooks, because a
compliance gate that opens when its database is down is no gate) or ``allow`` (admit with a warning).

Prometheus: ``veu_admission_decisions_total{code,allowed,mode}``,
``veu_admission_review_duration_seconds`` (histogram), ``veu_admission_errors_total{reason}``.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import os
import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from prometheus_client import Counter, Histogram
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool

from policies.errors import PolicyError

log = logging.getLogger("veu.webhook")

DEFAULT_MAX_BYTES = 3 * 1024 * 1024

DECISIONS = Counter("veu_admission_decisions_total", "Admission decisions by code", ["code", "allowed", "mode"])
LATENCY = Histogram(
    "veu_admission_review_duration_seconds", "Time to answer one AdmissionReview",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
ERRORS = Counter("veu_admission_errors_total", "Reviews answered with an error or by the failure mode", ["reason"])

router = APIRouter(tags=["admission"])


class BodyTooLarge(Exception):
    pass


def max_bytes() -> int:
    try:
        return max(1024, int(os.environ.get("VEU_WEBHOOK_MAX_BYTES", DEFAULT_MAX_BYTES)))
    except ValueError:
        return DEFAULT_MAX_BYTES


def failure_mode() -> str:
    m = os.environ.get("VEU_WEBHOOK_FAILURE_MODE", "deny").strip().lower()
    return m if m in ("deny", "allow") else "deny"


def cluster_name() -> str:
    return os.environ.get("VEU_CLUSTER", "")


async def _read_limited(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge()
    buf = bytearray()
    async for chunk in request.stream():
        buf += chunk
        if len(buf) > limit:
            raise BodyTooLarge()
    return bytes(buf)


def _bad_request(detail: str, reason: str) -> JSONResponse:
    ERRORS.labels(reason).inc()
    return JSONResponse({"detail": detail}, status_code=400)


def _uid_of(body: Any) -> tuple[str, str]:
    req = body.get("request") if isinstance(body, dict) else None
    uid = req.get("uid") if isinstance(req, dict) else None
    av = body.get("apiVersion") if isinstance(body, dict) else None
    return (uid if isinstance(uid, str) else ""), (av if isinstance(av, str) else "admission.k8s.io/v1")


def _failure_response(body: Any, why: str) -> JSONResponse:
    uid, av = _uid_of(body)
    mode = failure_mode()
    allowed = mode == "allow"
    msg = (f"veu-governor could not evaluate red flag 28: {why}; failing {'open' if allowed else 'closed'} "
           f"(VEU_WEBHOOK_FAILURE_MODE={mode})")
    resp: dict[str, Any] = {"uid": uid, "allowed": allowed}
    if allowed:
        resp["warnings"] = [msg[:240]]
    else:
        resp["status"] = {"code": 503, "reason": "ServiceUnavailable", "message": msg}
    DECISIONS.labels("FAILURE_MODE", str(allowed).lower(), mode).inc()
    return JSONResponse({"apiVersion": av, "kind": "AdmissionReview", "response": resp})


def evaluate(database_url: str | None, body: Any) -> dict[str, Any]:
    """Evaluate one parsed review against the store in its own transaction (run in a worker thread)."""
    from agent.cases import evaluate_review
    from agent.packs import registry
    from agent.store import get_engine

    with Session(get_engine(database_url), expire_on_commit=False) as s:
        try:
            out = evaluate_review(s, registry(), body, cluster=cluster_name(), commit=True)
            s.commit()
        except BaseException:
            s.rollback()
            raise
    DECISIONS.labels(out.code, str(out.allowed).lower(), out.decision.mode if out.decision else "-").inc()
    return out.response()


def _unstorable(body: Any) -> str:
    """Why a parsed body holds text no store can keep (NUL, unpaired UTF-16 surrogate), else ""."""
    stack = [body]
    while stack:  # iterative: the body may be nested as deep as the parser allows
        x = stack.pop()
        if isinstance(x, dict):
            stack.extend(x.keys())
            stack.extend(x.values())
        elif isinstance(x, list):
            stack.extend(x)
        elif isinstance(x, str):
            if "\x00" in x:
                return "a string contains a NUL character (\\u0000), which cannot be stored or shown"
            try:
                x.encode("utf-8")
            except UnicodeEncodeError:
                return "a string contains an unpaired UTF-16 surrogate (not valid Unicode text)"
    return ""


_EVAL_SLOTS: dict[int, asyncio.Semaphore] = {}


def _evaluations() -> asyncio.Semaphore:
    """At most ``VEU_WEBHOOK_EVALUATIONS`` reviews evaluated at once per event loop, admitted in arrival order.

    More threads than this only take turns at the interpreter lock: a review that loses the turn (or the
    audit chain's lock) repeatedly waits far longer than the rest (the p99). A few in flight keep the store
    busy while Python works; the rest wait their turn in a fair queue. Four: on the bench (2 cores, client
    at concurrency 8) 3, 4 and 6 slots gave 231, 254 and 265 reviews/s, 2 gave ~25% less than 4, and the
    p99 at half load was the same for 2 and 4.
    """
    loop = id(asyncio.get_running_loop())
    sem = _EVAL_SLOTS.get(loop)
    if sem is None:
        sem = _EVAL_SLOTS[loop] = asyncio.Semaphore(int(os.environ.get("VEU_WEBHOOK_EVALUATIONS", "4")))
    return sem


_seen = 0
_FREEZE_AT = (1, 50)  # at start-up, and again once the packs, catalog and statement caches are loaded


def _freeze_startup_objects() -> None:
    """Move what start-up and the first reviews allocated out of the cyclic GC's reach (twice, then never).

    The app's modules, ORM mappers, pack registries and compiled statements are long-lived; left in the
    collected generations, every full collection re-scans them and pauses whichever review is running
    (a p99 spike). A few in-flight objects frozen with them stay allocated: bounded and harmless.
    """
    global _seen
    if _seen <= _FREEZE_AT[-1]:
        _seen += 1
        if _seen in _FREEZE_AT:
            gc.freeze()


@router.post("/validate", summary="Validating admission webhook (AdmissionReview admission.k8s.io/v1)")
async def validate(request: Request) -> JSONResponse:
    t0 = time.perf_counter()
    _freeze_startup_objects()
    try:
        return await _validate(request)
    finally:
        LATENCY.observe(time.perf_counter() - t0)


async def _validate(request: Request) -> JSONResponse:
    limit = max_bytes()
    try:
        raw = await _read_limited(request, limit)
    except BodyTooLarge:
        return _bad_request(f"body: larger than {limit} bytes (VEU_WEBHOOK_MAX_BYTES)", "too_large")
    try:
        body = json.loads(raw)
    except RecursionError:
        # The C decoder stops at the interpreter's recursion limit (about 1000 levels) and says so.
        return _bad_request("body: JSON nested deeper than the parser allows (about 1000 levels)", "too_deep")
    except ValueError as exc:
        return _bad_request(f"body: not valid JSON ({str(exc)[:120]})", "bad_json")
    if b"\\u" in raw:  # only an escape can smuggle in a NUL or a lone surrogate: skip the walk otherwise
        bad = _unstorable(body)
        if bad:
            return _bad_request(f"body: {bad}", "unstorable")
    from agent.cases import ReviewError, parse_review

    try:
        parse_review(body)
    except ReviewError as exc:
        return _bad_request(str(exc), "bad_review")
    try:
        async with _evaluations():
            resp = await run_in_threadpool(evaluate, request.app.state.database_url, body)
    except (OperationalError, DBAPIError) as exc:
        ERRORS.labels("store_unavailable").inc()
        log.error("admission: store unavailable: %s", exc)
        first = str(getattr(exc, "orig", exc)).strip().splitlines()
        return _failure_response(body, f"store unavailable ({first[0][:200] if first else 'no detail'})")
    except PolicyError as exc:
        # A policy pack or catalog problem is the operator's to fix; say which.
        ERRORS.labels("policy_error").inc()
        return _failure_response(body, f"configuration error: {str(exc)[:300]}")
    except Exception as exc:  # never a 500: the API server would apply failurePolicy with no reason given
        ERRORS.labels("internal").inc()
        log.exception("admission: internal error")
        return _failure_response(body, f"internal error ({type(exc).__name__})")
    return JSONResponse(resp)
