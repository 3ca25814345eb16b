"""The validating admission webhook: ``POST /validate`` speaking admission.k8s.io/v1 AdmissionReview.

The request body is read with a size limit (``VEU_WEBHOOK_MAX_BYTES``, default 3 MiB, the API server's
own request limit), parsed, and queued for :func:`agent.cases.evaluate_reviews`, which a worker thread runs
on the reviews waiting, in arrival order, several to a transaction (see :class:`_Queue`). A body
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
import weakref
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from prometheus_client import Counter, Histogram
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlmodel import Session

from policies.errors import PolicyError

log = logging.getLogger("veu.webhook")

DEFAULT_MAX_BYTES = 3 * 1024 * 1024

DECISIONS = Counter("veu_admission_decisions_total", "Admission decisions by code", ["code", "allowed", "mode"])
LATENCY = Histogram(
    "veu_admission_review_duration_seconds", "Time to answer one AdmissionReview",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
BATCH = Histogram("veu_admission_batch_reviews", "Reviews evaluated together in one transaction",
                  buckets=(1, 2, 4, 8, 16, 32, 64, 128))
ERRORS = Counter("veu_admission_errors_total", "Reviews answered with an error or by the failure mode", ["reason"])

router = APIRouter(tags=["admission"])


class BodyTooLarge(Exception):
    pass


def max_bytes() -> int:
    return max(1024, _env_int("VEU_WEBHOOK_MAX_BYTES", DEFAULT_MAX_BYTES))


def failure_mode() -> str:
    m = os.environ.get("VEU_WEBHOOK_FAILURE_MODE", "deny").strip().lower()
    return m if m in ("deny", "allow") else "deny"


def cluster_name() -> str:
    return os.environ.get("VEU_CLUSTER", "")


async def _read_limited(chunks: AsyncIterator[bytes], declared: str | None, limit: int) -> bytes:
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge()
    buf = bytearray()
    async for chunk in chunks:
        buf += chunk
        if len(buf) > limit:
            raise BodyTooLarge()
    return bytes(buf)


def _bad_request(detail: str, reason: str) -> tuple[int, dict[str, Any]]:
    ERRORS.labels(reason).inc()
    return 400, {"detail": detail}


def _uid_of(body: Any) -> tuple[str, str]:
    req = body.get("request") if isinstance(body, dict) else None
    uid = req.get("uid") if isinstance(req, dict) else None
    av = body.get("apiVersion") if isinstance(body, dict) else None
    return (uid if isinstance(uid, str) else ""), (av if isinstance(av, str) else "admission.k8s.io/v1")


def _failure_response(body: Any, why: str) -> tuple[int, dict[str, Any]]:
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
    return 200, {"apiVersion": av, "kind": "AdmissionReview", "response": resp}


def evaluate(database_url: str | None, bodies: list[Any]) -> list[dict[str, Any] | Exception]:
    """Evaluate parsed reviews, in order, in one transaction (run in a worker thread): each one's response,
    or the exception that stopped it. When the batch fails for any reason but an unreachable store, each
    review is retried in a transaction of its own, so one review's failure (a pack it trips over, a
    constraint) is its alone."""
    from agent.cases import evaluate_reviews
    from agent.packs import registry
    from agent.store import get_engine

    engine = get_engine(database_url)
    try:
        with Session(engine, expire_on_commit=False) as s:
            try:
                outs = evaluate_reviews(s, registry(), bodies, cluster=cluster_name(), commit=True)
                s.commit()
            except BaseException:
                s.rollback()
                raise
    except OperationalError as exc:  # the store is unreachable: no review of the batch would fare better alone
        return [exc] * len(bodies)
    except Exception as exc:
        if len(bodies) == 1:
            return [exc]
        return [r for body in bodies for r in evaluate(database_url, [body])]
    for out in outs:
        DECISIONS.labels(out.code, str(out.allowed).lower(), out.decision.mode if out.decision else "-").inc()
    return [out.response() for out in outs]


def unstorable(body: Any) -> str:
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


class _Queue:
    """Reviews waiting to be evaluated, taken in arrival order several to a transaction.

    What a review costs is mostly the fixed work per transaction and per statement (the round trips, the
    commit, the driver's and the session's bookkeeping), so reviews that arrive while others are being
    evaluated are taken together, up to ``VEU_WEBHOOK_BATCH`` (default 32) at a time, by one of
    ``VEU_WEBHOOK_EVALUATIONS`` (default 1) transactions in flight: under load each review pays a share of
    that work, and a lone review waits for nothing (no timer gathers a batch). One in flight measured better
    than two on every figure (throughput, CPU per review, p50 and p99 at half load): a second transaction
    mostly took turns with the first at the interpreter lock, and it split the waiting reviews into smaller
    batches that each paid the whole fixed cost. Replicas, not threads, add concurrency.
    """

    def __init__(self, database_url: str | None) -> None:
        self.database_url = database_url
        self.waiting: list[tuple[Any, asyncio.Future[dict[str, Any] | Exception]]] = []
        self.running: set[asyncio.Task[None]] = set()
        self.slots = _env_int("VEU_WEBHOOK_EVALUATIONS", 1)
        self.batch = _env_int("VEU_WEBHOOK_BATCH", 32)
        # Its own threads, one per transaction in flight (a plain executor: anyio's thread pool does more
        # bookkeeping per call than the queue needs), stopped when the queue is forgotten with its loop.
        self.executor = ThreadPoolExecutor(self.slots, thread_name_prefix="veu-admission")
        weakref.finalize(self, self.executor.shutdown, wait=False)

    async def evaluate(self, body: Any) -> dict[str, Any]:
        fut: asyncio.Future[dict[str, Any] | Exception] = asyncio.get_running_loop().create_future()
        self.waiting.append((body, fut))
        self._start()
        res = await fut
        if isinstance(res, Exception):
            raise res
        return res

    def _start(self) -> None:
        while self.waiting and len(self.running) < self.slots:
            taken, self.waiting = self.waiting[:self.batch], self.waiting[self.batch:]
            BATCH.observe(len(taken))
            task = asyncio.create_task(self._run(taken))
            self.running.add(task)
            task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self.running.discard(task)
        self._start()

    async def _run(self, taken: list[tuple[Any, asyncio.Future[dict[str, Any] | Exception]]]) -> None:
        try:
            results: list[dict[str, Any] | Exception] = await asyncio.get_running_loop().run_in_executor(
                self.executor, evaluate, self.database_url, [body for body, _f in taken])
        except Exception as exc:  # the thread pool itself failed: every review in the batch hears why
            results = [exc] * len(taken)
        for (_body, fut), res in zip(taken, results, strict=True):
            if not fut.done():  # the request may have been cancelled (client gone)
                fut.set_result(res)


def _env_int(name: str, default: int) -> int:
    try:
        return max(1, int(os.environ.get(name, default)))
    except ValueError:
        return default


_QUEUES: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str | None, _Queue]] = weakref.WeakKeyDictionary()


def _queue(database_url: str | None) -> _Queue:
    """This event loop's queue for that store (tests run several apps, each on its own loop, and a queue's
    futures belong to its loop); forgotten with the loop."""
    queues = _QUEUES.setdefault(asyncio.get_running_loop(), {})
    q = queues.get(database_url)
    if q is None:
        q = queues[database_url] = _Queue(database_url)
    return q


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
    status, payload = await answer(request.stream(), request.headers.get("content-length"),
                                   request.app.state.database_url)
    return JSONResponse(payload, status_code=status)


class ValidateEndpoint:
    """``POST /validate`` answered in front of the framework (the webhook-only app's hot path).

    The same :func:`answer` as the FastAPI route, without the router, the inner middleware, the endpoint's
    dependency handling and the response classes: together they cost about as much per review as the whole
    of a bare echo webhook, on the event loop, which shares the interpreter lock with the evaluation. Added
    as the app's middleware (inside Starlette's error handling); every other request goes on unchanged.
    """

    def __init__(self, app: Any, database_url: str | None) -> None:
        self.app, self.database_url = app, database_url

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] != "/validate" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        length = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"content-length"), None)
        try:
            status, payload = await answer(_body(receive), length, self.database_url)
        except _Disconnected:
            return  # the client went away: nobody to answer
        body = json.dumps(payload, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


class _Disconnected(Exception):
    pass


async def _body(receive: Any) -> AsyncIterator[bytes]:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Disconnected()
        yield message.get("body", b"")
        if not message.get("more_body", False):
            return


async def answer(chunks: AsyncIterator[bytes], declared_length: str | None, database_url: str | None
                 ) -> tuple[int, dict[str, Any]]:
    """The HTTP status and JSON body answering one ``POST /validate`` (its body arriving as ``chunks``)."""
    t0 = time.perf_counter()
    _freeze_startup_objects()
    try:
        return await _answer(chunks, declared_length, database_url)
    finally:
        LATENCY.observe(time.perf_counter() - t0)


async def _answer(chunks: AsyncIterator[bytes], declared_length: str | None, database_url: str | None
                  ) -> tuple[int, dict[str, Any]]:
    limit = max_bytes()
    try:
        raw = await _read_limited(chunks, declared_length, limit)
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
        bad = unstorable(body)
        if bad:
            return _bad_request(f"body: {bad}", "unstorable")
    from agent.cases import ReviewError, parse_review

    try:
        parse_review(body)
    except ReviewError as exc:
        return _bad_request(str(exc), "bad_review")
    try:
        resp = await _queue(database_url).evaluate(body)
    except Exception as exc:  # never a 500: the API server would apply failurePolicy with no reason given
        reason, why = failure(exc)
        ERRORS.labels(reason).inc()
        if reason == "store_unavailable":
            log.error("admission: store unavailable: %s", exc)
        elif reason == "internal":
            log.exception("admission: internal error")
        return _failure_response(body, why)
    return 200, resp


def failure(exc: Exception, *, one_line: bool = False) -> tuple[str, str]:
    """The ``veu_admission_errors_total`` reason and the why of an evaluation that raised, for the answer: a store
    error's first line (no SQL, no parameters), a policy pack or catalog problem (the operator's to fix: which), an
    internal error's type (the rest is for the log). ``one_line``: the pack problem's text on one line (a Kueue
    Workload's status)."""
    if isinstance(exc, (OperationalError, DBAPIError)):
        first = str(getattr(exc, "orig", None) or exc).strip().splitlines()
        return "store_unavailable", f"store unavailable ({first[0][:200] if first else 'no detail'})"
    if isinstance(exc, PolicyError):
        text = " ".join(str(exc).split()) if one_line else str(exc)
        return "policy_error", f"configuration error: {text[:300]}"
    return "internal", f"internal error ({type(exc).__name__})"
