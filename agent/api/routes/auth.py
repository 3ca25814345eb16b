"""Authentication middleware (tokens, OIDC, dashboard sessions with CSRF checks) and /api/v1/tokens."""

from __future__ import annotations

import html
import ipaddress
import json
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any
from urllib.parse import parse_qs, quote

from anyio import to_thread
from fastapi import APIRouter, FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from itsdangerous import BadSignature, URLSafeTimedSerializer
from pydantic import Field
from sqlmodel import Session, select

from agent.api.deps import DbSession
from agent.api.fields import StrictBody, api_fields
from agent.auth import (
    AuthError,
    OidcConfig,
    Principal,
    create_token,
    end_sessions,
    oidc_config_from_settings,
    record_token_use,
    required_permission,
    revoke_token,
    session_valid,
    token_prefix,
    token_use_due,
    verify_jwt,
    verify_token,
)
from agent.config import settings
from agent.exports.base import utc_iso
from agent.store import session_scope
from agent.store.tables.auth import ApiToken

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

SESSION_COOKIE = "veu_session"
# Over HTTPS the cookie is ``__Host-veu_session``: browsers keep a ``__Host-`` cookie only if it was set Secure, by
# this host (no Domain) and for Path=/, so a sibling subdomain or a plain-HTTP man in the middle cannot plant or
# overwrite it. Over plain HTTP (the demo) browsers refuse the prefix, so the plain name stays.
SECURE_SESSION_COOKIE = "__Host-" + SESSION_COOKIE
SESSION_MAX_AGE = 8 * 3600
# Served without credentials: these paths exactly, and what is under the two prefixes (static files, Swagger UI's
# OAuth redirect). Exact, so that a route added later whose path merely starts like one (``/validate-all``,
# ``/docs-admin``) is not public by accident.
_PUBLIC_PATHS = frozenset(("/healthz", "/readyz", "/metrics", "/validate", "/login", "/openapi.json", "/docs",
                           "/redoc", "/favicon.ico"))
_PUBLIC_PREFIXES = ("/static/", "/docs/")
_UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}
# Sign-in throttling: tokens are 256-bit secrets, so this bounds store load and noisy guessing, not luck.
LOGIN_FAILURES = 10
LOGIN_WINDOW_SECONDS = 300.0
# Addresses the throttle remembers at most (see LoginThrottle._make_room).
TRACKED_ADDRESSES = 10_000

router = APIRouter(prefix="/api/v1", tags=["auth"])


class TokenIn(StrictBody):
    role: str = Field(description="viewer | planner | compliance | auditor | admin")
    name: str = Field(default="", max_length=200)
    expires_days: int | None = Field(default=None, ge=1, le=3650)


@router.get("/whoami")
def whoami(request: Request) -> dict[str, str]:
    p: Principal = getattr(request.state, "principal", Principal("anonymous", "admin", "anonymous"))
    return {"name": p.name, "role": p.role, "via": p.via}


@router.post("/tokens", status_code=201)
@api_fields({"expires": "expires_days"})
def create(body: TokenIn, request: Request, s: Session = DbSession) -> dict[str, Any]:
    p: Principal = getattr(request.state, "principal", Principal("anonymous", "admin", "anonymous"))
    row, secret = create_token(s, role=body.role, name=body.name, expires_days=body.expires_days,
                               created_by=p.actor)
    _audit(s, p, "token.create", f"token:{row.prefix}", {"role": row.role, "name": row.name})
    return {"id": row.id, "prefix": row.prefix, "role": row.role, "token": secret,
            "expires_at": utc_iso(row.expires_at)}


@router.get("/tokens")
def list_tokens(s: Session = DbSession) -> list[dict[str, Any]]:
    """Tokens without their secrets; ``last_used_at`` (to within a minute, None if never used) finds stale ones."""
    # Times as every other answer writes them (2026-12-05T09:38:45+00:00), not pydantic's "Z".
    return [
        {"id": t.id, "prefix": t.prefix, "name": t.name, "role": t.role, "created_at": utc_iso(t.created_at),
         "expires_at": utc_iso(t.expires_at), "last_used_at": utc_iso(t.last_used_at),
         "revoked": t.revoked_at is not None}
        for t in s.exec(select(ApiToken).order_by(ApiToken.id)).all()
    ]


@router.delete("/tokens/{ident}")
def revoke(ident: str, request: Request, s: Session = DbSession) -> dict[str, Any]:
    p: Principal = getattr(request.state, "principal", Principal("anonymous", "admin", "anonymous"))
    try:
        row = revoke_token(s, ident)
    except AuthError as exc:  # no such token: the path names nothing (404), not a bad value (422)
        raise HTTPException(404, str(exc)) from None
    _audit(s, p, "token.revoke", f"token:{row.prefix}", {})
    return {"id": row.id, "prefix": row.prefix, "revoked": True}


def _audit(s: Session, p: Principal, action: str, subject: str, payload: dict[str, Any]) -> None:
    try:
        from agent.audit import record
    except ImportError:  # pragma: no cover - the audit module ships with the product
        return
    record(s, actor=p.actor, action=action, subject=subject, payload=payload)


def _serializer(secret: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(secret, salt="veu-session")


def session_cookie_name(secure: bool) -> str:
    """The session cookie's name: ``__Host-veu_session`` when it is set Secure (HTTPS), ``veu_session`` over HTTP."""
    return SECURE_SESSION_COOKIE if secure else SESSION_COOKIE


async def record_use(database_url: str | None, principal: Principal) -> None:
    """Record that ``principal``'s API token (behind a bearer token or a dashboard session) was used, when its
    ``last_used_at`` is due: no thread and no store round trip otherwise. Never raises for a store failure
    (``record_token_use`` logs it), in its own transaction."""
    if not (principal.token and token_use_due(principal.last_used_at)):
        return

    def write() -> None:
        with session_scope(database_url) as s:
            record_token_use(s, principal.token)

    await to_thread.run_sync(write)


class AuthMiddleware:
    """Pure ASGI middleware: cheap for the webhook path, strict everywhere else."""

    def __init__(self, app: Callable[..., Awaitable[None]], mode: str, database_url: str | None,
                 oidc: OidcConfig | None, session_secret: str) -> None:
        self.app, self.mode, self.database_url, self.oidc = app, mode, database_url, oidc
        self.sessions = _serializer(session_secret)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        method: str = scope["method"]
        if self.mode == "none":
            scope.setdefault("state", {})["principal"] = Principal("anonymous", "admin", "anonymous")
            await self._call_as(Principal("anonymous", "admin", "anonymous"), scope, receive, send)
            return
        if path in _PUBLIC_PATHS or path.startswith(_PUBLIC_PREFIXES):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        secure = scope.get("scheme") == "https"  # what request.url.scheme says at sign-in
        perm = required_permission(method, path)
        if perm is not None:  # the API: bearer credentials
            auth = headers.get("authorization", "")
            if not auth.lower().startswith("bearer "):
                await _json(send, 401, "authentication required: send 'Authorization: Bearer <token>'",
                            {"www-authenticate": "Bearer"})
                return
            try:
                principal = await self._principal(auth[7:].strip())
            except AuthError as exc:
                await _json(send, 401, str(exc), {"www-authenticate": "Bearer"})
                return
        else:  # the dashboard: a signed session cookie, and same-origin checks on form posts
            principal_or_none = await self._session(headers.get("cookie", ""), secure)
            if principal_or_none is None:
                # With the query: a listing's filters (?status=open) are part of where the user was going.
                query = scope.get("query_string", b"").decode("latin-1")
                await _redirect(send, "/login?next=" + quote(path + ("?" + query if query else ""), safe="/"))
                return
            principal = principal_or_none
            if method in _UNSAFE and not _same_origin(headers, secure):
                detail = "cross-site form submission refused (Origin/Referer does not match Host)"
                if wants_html(path, headers):
                    await _page(scope, receive, send, principal, "Form refused",
                                "This form was not sent from this dashboard's own page (its Origin or Referer "
                                "names another site, or none), so nothing was changed.",
                                "Open the page on this site and submit the form again; if it still fails, a "
                                "browser extension or proxy may be stripping the Referer header.")
                else:
                    await _json(send, 403, detail)
                return
            perm = _dashboard_permission(method, path)
        if not principal.can(perm):
            if wants_html(path, headers):
                await _page(scope, receive, send, principal, "Not allowed", *_refusal(principal, method, path, perm))
            else:
                await _json(send, 403, f"role {principal.role!r} may not {method} {path} (needs {perm!r})")
            await record_use(self.database_url, principal)  # refused, but its holder is using it: not stale
            return
        scope.setdefault("state", {})["principal"] = principal
        await self._call_as(principal, scope, receive, send)
        # After the response: the bookkeeping write (at most once a minute per token) delays no answer.
        await record_use(self.database_url, principal)

    async def _call_as(self, principal: Principal, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            from agent.audit import acting_as
        except ImportError:  # pragma: no cover
            await self.app(scope, receive, send)
            return
        with acting_as(principal.actor):
            await self.app(scope, receive, send)

    async def _principal(self, credential: str) -> Principal:
        if credential.startswith("veu_"):
            def check() -> Principal:
                with session_scope(self.database_url) as s:
                    return verify_token(s, credential)

            return await to_thread.run_sync(check)
        if self.oidc is None:
            raise AuthError("bearer token is not a veu-governor token and OIDC is not configured")
        return verify_jwt(credential, self.oidc)

    async def _session(self, cookie_header: str, secure: bool) -> Principal | None:
        """The session's principal while its token stands (not revoked, not expired, not signed out)."""
        data = session_data(self.sessions, cookie_header, secure=secure)
        if data is None:
            return None

        def check() -> Principal | None:
            with session_scope(self.database_url) as s:
                try:
                    return session_valid(s, str(data.get("prefix", "")), float(data.get("at", 0)))
                except AuthError:
                    return None

        return await to_thread.run_sync(check)


def session_data(sessions: URLSafeTimedSerializer, cookie_header: str, *, secure: bool) -> dict[str, Any] | None:
    """The signed session cookie's content, if there is a valid one under the name of this mode (``secure``: HTTPS).
    Over HTTPS a cookie under the plain name is ignored: anyone on the network path or a sibling subdomain can set
    that one, and it is exactly what the ``__Host-`` prefix shuts out."""
    name = session_cookie_name(secure)
    for part in cookie_header.split(";"):
        k, _, v = part.strip().partition("=")
        if k == name:
            try:
                data = sessions.loads(v, max_age=SESSION_MAX_AGE)
            except BadSignature:
                return None
            return data if isinstance(data, dict) else None
    return None


def _dashboard_permission(method: str, path: str) -> str:
    if path == "/logout":
        return "read"  # anyone signed in may sign out
    if method not in _UNSAFE:
        return "audit" if path.startswith(("/exports", "/audit")) else "read"
    return required_permission(method, "/api/v1" + path) or "admin"


def wants_html(path: str, headers: Mapping[str, str]) -> bool:
    """Whether a refusal should be a page in the dashboard's layout rather than ``{"detail": ...}``: a dashboard
    path (never /api/...) asked for by a client that accepts HTML, as a browser's navigation and form posts
    do. Scripts and API clients (curl's ``*/*``, fetch) keep the JSON body they parse."""
    if path.startswith("/api/"):
        return False
    accept = headers.get("accept", "").lower()
    return "text/html" in accept or "application/xhtml+xml" in accept


# What each permission lets a dashboard user do, in the words of the pages (for the refusal's message).
_MAY_DO = {
    "read": "view the dashboard",
    "plan": "run the what-if planner and reserve or release headroom",
    "compliance": "resolve red-flag cases, record deadline filings and edit the controls register",
    "audit": "see the exports and the audit chain, and download or sign them",
    "admin": "change the fleet's records",
}


def _refusal(principal: Principal, method: str, path: str, perm: str) -> tuple[str, str]:
    """The message and advice of a dashboard 403: what the role cannot do, and which roles can."""
    from agent.auth import PERMISSIONS, ROLES

    able = [r for r in ROLES if perm in PERMISSIONS[r]]
    what = f"the page {path}" if method not in _UNSAFE else f"the form sent to {path}"
    message = (f"Your role, {principal.role}, cannot {_MAY_DO.get(perm, perm)} ({what} needs the "
               f"{perm!r} permission).")
    advice = (f"Ask an admin for a token with the role {' or '.join(able)}, then sign out and sign in with it."
              if able else "No role may do this.")
    return message, advice


async def _page(scope: Scope, receive: Receive, send: Send, principal: Principal, heading: str, message: str,
                advice: str) -> None:
    """A 403 in the dashboard's layout (navigation, who is signed in, sign-out) instead of a JSON body."""
    from starlette.requests import Request as StarletteRequest

    from agent.api.routes.dashboard import refused_page

    scope.setdefault("state", {})["principal"] = principal  # the header names who is signed in
    request = StarletteRequest(scope, receive)
    await refused_page(request, 403, heading, message, advice)(scope, receive, send)


def _same_origin(headers: Mapping[str, str], secure: bool) -> bool:
    """Whether the Origin (else the Referer) names this host, and over HTTPS (``secure``) an https page.

    A page on this host over plain HTTP is another origin: a man in the middle can serve one before the browser
    knows the site's HSTS, and browsers without schemeful SameSite send the ``__Host-`` cookie with its posts.
    Over plain HTTP an https page is accepted: a TLS-terminating proxy that is not trusted for X-Forwarded-Proto
    forwards the browser's https page as plain HTTP."""
    host = headers.get("host", "")
    origin = headers.get("origin") or headers.get("referer") or ""
    if not origin or not host:
        return False
    scheme, sep, rest = origin.partition("://")
    if not sep or (secure and scheme.lower() != "https"):
        return False
    return rest.split("/", 1)[0] == host


async def _json(send: Send, status: int, detail: str, extra: dict[str, str] | None = None) -> None:
    body = json.dumps({"detail": detail}).encode()
    hdrs = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    hdrs += [(k.encode(), v.encode()) for k, v in (extra or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": hdrs})
    await send({"type": "http.response.body", "body": body})


async def _redirect(send: Send, location: str) -> None:
    await send({"type": "http.response.start", "status": 303,
                "headers": [(b"location", location.encode()), (b"content-length", b"0")]})
    await send({"type": "http.response.body", "body": b""})


_LOGIN = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>veu-governor sign in</title>
<style>body{font-family:system-ui,sans-serif;max-width:28rem;margin:4rem auto}input{width:100%%;padding:.5rem}
button{margin-top:1rem;padding:.5rem 1rem}.err{color:#b00}</style></head><body>
<h1>veu-governor</h1><p>Sign in with an API token (<code>veuctl tokens create --role viewer</code>).</p>
<p class="err">%s</p><form method="post" action="/login"><input type="hidden" name="next" value="%s">
<label>Token <input name="token" type="password" autocomplete="off" required></label>
<button type="submit">Sign in</button></form></body></html>"""


def setup(app: FastAPI) -> None:
    cfg = settings()
    mode = cfg.auth if cfg.auth in ("token", "none") else "token"
    oidc = oidc_config_from_settings(cfg.oidc_issuer, cfg.oidc_audience, cfg.oidc_jwks_file, cfg.oidc_role_claim)
    secret = cfg.session_secret or secrets.token_urlsafe(32)
    database_url = app.state.database_url
    app.state.auth_mode = mode

    @app.get("/login", include_in_schema=False)
    def login_form(next: str = "/") -> HTMLResponse:
        return HTMLResponse(_LOGIN % ("", html.escape(_safe_next(next))))

    throttle = LoginThrottle()

    @app.post("/login", include_in_schema=False)
    async def login(request: Request) -> Any:
        hdrs = {k.lower(): v for k, v in request.headers.items()}
        # Read first: the form shown again after a refusal keeps where the user was going, so that signing in from
        # it still lands there (it said "/" and sent them to the overview).
        form = parse_qs((await request.body()).decode("utf-8", errors="replace"))
        nxt = _safe_next((form.get("next") or ["/"])[0])
        if (hdrs.get("origin") or hdrs.get("referer")) and not _same_origin(hdrs, request.url.scheme == "https"):
            # Login CSRF: another site must not sign this browser in with the attacker's token.
            return HTMLResponse(_LOGIN % ("Sign in from this site's own page.", html.escape(nxt)), status_code=403)
        client = request.client.host if request.client else ""
        wait = throttle.wait(client)
        if wait:
            return HTMLResponse(_LOGIN % (f"Too many failed sign-ins from this address; try again in {wait} s.",
                                          html.escape(nxt)), status_code=429, headers={"retry-after": str(wait)})
        # Counted as a failure before the token is checked (and forgiven if it signs in): counted after, every
        # attempt sent while the first ones were being checked passed the limit.
        attempt = throttle.failed(client)
        token = (form.get("token") or [""])[0]
        try:
            def check() -> Principal:
                with session_scope(database_url) as s:
                    return verify_token(s, token)

            p = await to_thread.run_sync(check)
        except AuthError as exc:
            # The reason (malformed, unknown, expired, revoked) and what to do: only the token's holder learns that a
            # token ended, since its hash is checked first.
            return HTMLResponse(_LOGIN % (html.escape(f"That token is not valid: {exc}."), html.escape(nxt)),
                                status_code=401)
        throttle.succeeded(client, attempt)
        await record_use(database_url, p)  # signing in is a use of the token
        resp = RedirectResponse(nxt, status_code=303)
        opened = {"name": p.name, "role": p.role, "prefix": token_prefix(token), "at": time.time()}
        secure = request.url.scheme == "https"
        # Path=/ and no Domain: what a __Host- cookie must have (and the plain one has too).
        resp.set_cookie(session_cookie_name(secure), _serializer(secret).dumps(opened), max_age=SESSION_MAX_AGE,
                        path="/", domain=None, httponly=True, secure=secure, samesite="strict")
        return resp

    @app.post("/logout", include_in_schema=False)
    async def logout(request: Request) -> RedirectResponse:
        secure = request.url.scheme == "https"
        data = session_data(_serializer(secret), request.headers.get("cookie", ""), secure=secure)
        if data and data.get("prefix"):
            def end() -> None:
                with session_scope(database_url) as s:
                    end_sessions(s, str(data["prefix"]))

            await to_thread.run_sync(end)  # the copied cookie is dead too, not only this browser's
        resp = RedirectResponse("/login", status_code=303)
        # Cleared under the name and with the attributes it was set with (a bare deletion is SameSite=Lax and not
        # Secure, and a browser ignores a __Host- deletion that is not Secure).
        resp.delete_cookie(session_cookie_name(secure), path="/", domain=None, httponly=True, secure=secure,
                           samesite="strict")
        return resp

    app.add_middleware(AuthMiddleware, mode=mode, database_url=database_url, oidc=oidc,  # type: ignore[arg-type]
                       session_secret=secret)


def throttle_key(client: str) -> str:
    """What the sign-in throttle counts ``client`` (an address) under: an IPv6 address by its /64, which one host
    holds whole and picks source addresses from at will (privacy addresses), an IPv4-mapped one as the IPv4
    address, anything else (a Unix socket, a test client) as it is."""
    try:
        ip = ipaddress.ip_address(client.split("%", 1)[0])  # without an IPv6 zone ("fe80::1%eth0")
    except ValueError:
        return client
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


class LoginThrottle:
    """Failed sign-ins per client address (an IPv6 /64: :func:`throttle_key`) in a sliding window: past ``limit``
    the form answers 429 until the oldest failure leaves the window. Per process (each API replica counts its
    own), in memory, at most ``tracked`` addresses."""

    def __init__(self, limit: int = LOGIN_FAILURES, window: float = LOGIN_WINDOW_SECONDS,
                 clock: Callable[[], float] = time.monotonic, tracked: int = TRACKED_ADDRESSES) -> None:
        self.limit, self.window, self.clock, self.tracked = limit, window, clock, tracked
        self._failures: dict[str, list[float]] = {}

    def _recent(self, key: str) -> list[float]:
        now = self.clock()
        kept = [t for t in self._failures.get(key, []) if now - t < self.window]
        if kept:
            self._failures[key] = kept
        else:
            self._failures.pop(key, None)
        return kept

    def wait(self, client: str) -> int:
        """Seconds until ``client`` may try again (0: now)."""
        recent = self._recent(throttle_key(client))
        if len(recent) < self.limit:
            return 0
        return max(1, int(recent[-self.limit] + self.window - self.clock()) + 1)

    def failed(self, client: str) -> float:
        """Count an attempt from ``client`` as failed; the returned stamp names it for :meth:`succeeded`."""
        key = throttle_key(client)
        if key not in self._failures and len(self._failures) >= self.tracked:
            self._make_room()
        at = self.clock()
        self._failures.setdefault(key, []).append(at)
        return at

    def _make_room(self) -> None:
        """Forget the addresses whose failures left the window and, if that is not a tenth of the table, those
        with the fewest failures (the oldest first): each such pass is followed by a tenth of the table's new
        addresses before the next, so a flood from many addresses costs little per attempt (it walked the whole
        table on every attempt), and an address being throttled is the last to be forgotten."""
        for key in list(self._failures):
            self._recent(key)
        keep = self.tracked - max(1, self.tracked // 10)
        if len(self._failures) > keep:
            # Fewest failures first, then the longest quiet: an address at the limit outlives a flood of single ones.
            order = sorted(self._failures, key=lambda k: (len(self._failures[k]), self._failures[k][-1]))
            for key in order[:len(self._failures) - keep]:
                del self._failures[key]

    def succeeded(self, client: str, attempt: float) -> None:
        """Forgive the attempt :meth:`failed` counted as ``attempt`` (its token signed in), and only it: clearing
        the address's failures let anyone holding a valid token sign in between guesses at others and reset the
        limit. Its entry may have left the window already; then nothing is removed."""
        key = throttle_key(client)
        recent = self._failures.get(key, [])
        for i in range(len(recent) - 1, -1, -1):  # the newest entry with its stamp (equal stamps are alike)
            if recent[i] == attempt:
                del recent[i]
                break
        if not recent:
            self._failures.pop(key, None)


def _safe_next(nxt: str) -> str:
    """``nxt`` if it is a path on this site, else ``/``: never send a signed-in user to another site.

    Browsers read a backslash as a slash and drop tabs and newlines from a URL, so ``/\\evil.example`` and
    ``/<tab>/evil.example`` are ``//evil.example`` (another site) to them: a path with a backslash, a C0 control
    character or DEL is not kept. A space inside the path is (an LPP cap's page ends in a party's name,
    ``/explain/uae-veu/lpp:Emirates AI``): browsers percent-encode it, and the redirect's Location does too."""
    if not nxt.startswith("/") or nxt.startswith("//"):
        return "/"
    if any(c == "\\" or ord(c) < 0x20 or ord(c) == 0x7F for c in nxt):
        return "/"
    return nxt
