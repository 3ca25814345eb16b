"""Authentication and roles: hashed API tokens, OIDC bearer JWTs, and the role → permission matrix.

Roles and what they may do:

- ``viewer``: read everything except the audit trail and exports.
- ``planner``: viewer + what-if and reservations.
- ``compliance``: viewer + resolve cases, record determinations and register evidence.
- ``auditor``: read everything, run exports, verify the audit chain.
- ``admin``: everything (parties, sites, packs, tokens, inventory writes).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import or_, update
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session, col, select

from agent.files import Stamp, file_stamp
from agent.store.db import MAX_ROW_ID
from agent.store.tables.auth import ApiToken
from agent.store.tables.core import as_utc, utcnow
from agent.text import unprintable
from policies.errors import PolicyError

ROLES = ("viewer", "planner", "compliance", "auditor", "admin")
PERMISSIONS: dict[str, frozenset[str]] = {
    "viewer": frozenset({"read"}),
    "planner": frozenset({"read", "plan"}),
    "compliance": frozenset({"read", "compliance"}),
    "auditor": frozenset({"read", "audit"}),
    "admin": frozenset({"read", "plan", "compliance", "audit", "admin"}),
}
TOKEN_PREFIX = "veu_"
# ``api_token.last_used_at`` is written at most once per token per this many seconds: finding stale tokens needs
# minutes, not instants, and a store write on every authenticated request would not be worth it.
LAST_USED_INTERVAL_SECONDS = 60

log = logging.getLogger(__name__)


class AuthError(PolicyError):
    """A credential is missing, malformed, expired, revoked or not allowed."""


@dataclass(frozen=True)
class Principal:
    name: str
    role: str
    via: str  # "token", "session", "oidc", "anonymous"
    # The 12-hex prefix of the API token behind a "token" or "session" principal ("" otherwise), and that token's
    # ``last_used_at`` as read when it was checked: what ``token_use_due`` decides a write on.
    token: str = ""
    last_used_at: datetime | None = None

    def can(self, permission: str) -> bool:
        return permission in PERMISSIONS.get(self.role, frozenset())

    @property
    def actor(self) -> str:
        return f"{self.via}:{self.name}"


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_token(
    s: Session, *, role: str, name: str, expires_days: int | None = None, created_by: str = ""
) -> tuple[ApiToken, str]:
    """Create a token; the secret is returned once and only its hash is stored."""
    if role not in ROLES:
        raise AuthError(f"--role: {role!r} is not one of {', '.join(ROLES)}")
    if expires_days is not None and not 1 <= expires_days <= 3650:
        raise AuthError("--expires: days must be between 1 and 3650")
    # Listed in a terminal (`veuctl tokens list`) and on every dashboard page as the signed-in user: one line of
    # printable text, as other names staff type (an escape would be replayed, a bidi override read as another name).
    why = unprintable("--name", name)
    if why is not None:
        raise AuthError(why)
    name = name.strip() or role
    prefix = secrets.token_hex(6)
    secret = f"{TOKEN_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"
    row = ApiToken(
        name=name[:200],
        role=role,
        prefix=prefix,
        token_hash=_hash(secret),
        created_by=created_by,
        expires_at=utcnow() + timedelta(days=expires_days) if expires_days else None,
    )
    s.add(row)
    s.flush()
    return row, secret


# What a holder of a token that no longer authenticates is to do (the API's 401 says it).
_NEW_TOKEN = "ask an admin for a new token (`veuctl tokens create --role ROLE --name NAME`)"
_TOKEN_RE = re.compile(r"^veu_([0-9a-f]{12})_[A-Za-z0-9_\-]{20,100}$")


def verify_token(s: Session, secret: str, now: datetime | None = None) -> Principal:
    m = _TOKEN_RE.match(secret)
    if m is None:
        raise AuthError("token: malformed; send the whole veu_... token `veuctl tokens create` printed")
    row = _token_row(s, m.group(1))
    if row is None or not hmac.compare_digest(row.token_hash, _hash(secret)):
        raise AuthError(f"token: unknown (mistyped, or not issued by this server's store); {_NEW_TOKEN}")
    ended = _ended(row, now or utcnow())
    if ended:
        raise AuthError(f"token: {ended}; {_NEW_TOKEN}")
    return Principal(name=row.name, role=row.role, via="token", token=row.prefix, last_used_at=row.last_used_at)


def _token_row(s: Session, prefix: str) -> ApiToken | None:
    return s.exec(select(ApiToken).where(ApiToken.prefix == prefix)).first() if prefix else None


def _ended(row: ApiToken, now: datetime) -> str:
    """Why the token no longer authenticates ("revoked", "expired"), or "" while it does."""
    if row.revoked_at is not None:
        return "revoked"
    if row.expires_at is not None and as_utc(row.expires_at) <= now:
        return "expired"
    return ""


def token_prefix(secret: str) -> str:
    """The public 12-hex prefix of a token (what a session remembers of it)."""
    m = _TOKEN_RE.match(secret)
    return m.group(1) if m else ""


def session_valid(s: Session, prefix: str, opened: float, now: datetime | None = None) -> Principal:
    """The principal of a dashboard session opened at ``opened`` (Unix time) with the token ``prefix``, or
    AuthError: a session ends with its token (revoked, expired) and with sign-out."""
    row = _token_row(s, prefix)
    if row is None:
        raise AuthError("session: its token is unknown")
    ended = _ended(row, now or utcnow())
    if ended:
        raise AuthError(f"session: its token {'was revoked' if ended == 'revoked' else 'expired'}")
    if row.sessions_ended_at is not None and opened <= as_utc(row.sessions_ended_at).timestamp():
        raise AuthError("session: signed out")
    return Principal(name=row.name, role=row.role, via="session", token=row.prefix, last_used_at=row.last_used_at)


def token_use_due(last_used_at: datetime | None, now: datetime | None = None) -> bool:
    """Whether a token last recorded as used at ``last_used_at`` is to be recorded again at ``now``: never recorded,
    or not within the last LAST_USED_INTERVAL_SECONDS."""
    return last_used_at is None or (now or utcnow()) - as_utc(last_used_at) >= timedelta(
        seconds=LAST_USED_INTERVAL_SECONDS)


def record_token_use(s: Session, prefix: str, now: datetime | None = None) -> bool:
    """Set ``last_used_at`` of the token ``prefix`` to ``now`` unless it was set within the last
    LAST_USED_INTERVAL_SECONDS, and commit; True when this call wrote it.

    The condition is in the UPDATE itself, so API replicas that each saw the old value write it once between them.
    A store failure is logged and swallowed (False): a token that authenticated the request must not fail it over
    bookkeeping. Call it in a session of its own (it commits or rolls back)."""
    now = now or utcnow()
    cutoff = now - timedelta(seconds=LAST_USED_INTERVAL_SECONDS)
    stmt = (update(ApiToken).where(col(ApiToken.prefix) == prefix)
            .where(or_(col(ApiToken.last_used_at).is_(None), col(ApiToken.last_used_at) <= cutoff))
            .values(last_used_at=now))
    try:
        written = bool(s.exec(stmt).rowcount)
        s.commit()
    except SQLAlchemyError as exc:
        s.rollback()
        # The driver's first line (not the statement and its parameters): what went wrong, short.
        reason = (str(getattr(exc, "orig", None) or exc).splitlines() or [""])[0]
        log.warning("api_token %s: last_used_at not recorded (%s: %s); the request was served", prefix,
                    type(exc).__name__, reason)
        return False
    return written


def end_sessions(s: Session, prefix: str) -> None:
    """Sign out: every dashboard session opened with this token so far is over."""
    row = _token_row(s, prefix)
    if row is not None:
        row.sessions_ended_at = utcnow()
        s.add(row)


def _is_token_id(ident: str) -> bool:
    """Whether ``ident`` is written as a token id: ASCII decimal digits within the id column's range. str.isdigit()
    also accepts superscripts ("²", which int() refuses: a 500) and other scripts' digits ("１", "٣", which int()
    reads as 1 and 3: revoking a token the caller never named); an out-of-range number is a store error."""
    return ident.isascii() and ident.isdigit() and len(ident) <= 10 and int(ident) <= MAX_ROW_ID


def revoke_token(s: Session, ident: str) -> ApiToken:
    """Revoke by id or by the 12-hex prefix shown at creation."""
    # A prefix is 12 hex digits and can be all decimal ones, so it is looked up first and an id only after.
    row = s.exec(select(ApiToken).where(ApiToken.prefix == ident)).first()
    if row is None and _is_token_id(ident):
        row = s.exec(select(ApiToken).where(ApiToken.id == int(ident))).first()
    if row is None:
        raise AuthError(f"token {ident!r}: not found; `veuctl tokens list` shows ids and prefixes")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        s.add(row)
    return row


# --- OIDC -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OidcConfig:
    issuer: str
    audience: str
    jwks: dict[str, Any]  # the key set as given, or as first read from ``jwks_file``
    role_claim: str = "veu_role"
    # When set, the key set is this file as it is now (read again when it changes), not ``jwks``.
    jwks_file: str = ""

    def key_set(self) -> dict[str, Any]:
        return current_jwks(self.jwks_file) if self.jwks_file else self.jwks


# A file changed less than this before it was read may change again without its stat showing it (an in-place
# rewrite to the same size within one tick of the file system's clock): such a read is not trusted to stand for the
# file, and the file is read again on the next request, until a read comes this long after its last change.
_JWKS_RACY_SECONDS = 2.0


@dataclass
class _JwksRead:
    stamp: Stamp | None  # the file as it was when ``jwks`` was read (None: gone since)
    jwks: dict[str, Any]
    settled: bool  # read long enough after the file last changed that an unchanged stamp means unchanged content
    bad: Stamp | None = None  # a version of the file that did not load (warned about once)


_jwks_reads: dict[str, _JwksRead] = {}
_jwks_lock = threading.Lock()


def _read_jwks(path: str) -> dict[str, Any]:
    """The key set in ``path``, or AuthError naming the setting and the file."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise AuthError(f"VEU_OIDC_JWKS_FILE: cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise AuthError(f"VEU_OIDC_JWKS_FILE: {path} is not JSON ({exc}); it must hold the issuer's key set, "
                        '{"keys": [...]}') from None
    if not isinstance(data, dict) or not isinstance(data.get("keys"), list) or not all(
            isinstance(k, dict) for k in data["keys"]):
        raise AuthError(f'VEU_OIDC_JWKS_FILE: {path} is not a JWK set: a JSON object {{"keys": [...]}} whose keys '
                        "are objects (the issuer's jwks_uri document)")
    return data


def _kids(jwks: dict[str, Any]) -> str:
    return ", ".join(str(k.get("kid", "?"))[:64] for k in jwks.get("keys", [])) or "none"


def current_jwks(path: str) -> dict[str, Any]:
    """The OIDC issuer's key set in the file ``path`` as it is now.

    Checked by a stat on each call and read again when the file changed: after the issuer rotates its keys and the
    Secret under the pod is updated, tokens of the new key are accepted and a key taken out of the set (a leaked
    one) is no longer trusted, without a restart (the set used to be read once at start). A changed file that does
    not load (half-written, not a key set) or is gone keeps the previous set, with one warning naming the file; it
    is read again once it changes. The first read must load: AuthError naming the setting."""
    with _jwks_lock:
        stamp = file_stamp(path)
        seen = _jwks_reads.get(path)
        if seen is not None:
            if stamp is None:
                if seen.stamp is not None:
                    log.warning("VEU_OIDC_JWKS_FILE: %s is gone; still trusting the previous key set (kids %s)",
                                path, _kids(seen.jwks))
                    seen.stamp, seen.settled = None, True
                return seen.jwks
            if (stamp == seen.stamp and seen.settled) or stamp == seen.bad:
                return seen.jwks
        read_at = time.time()
        try:
            jwks = _read_jwks(path)
        except AuthError as exc:
            if seen is None:
                raise
            seen.bad = stamp
            log.warning("%s; still trusting the previous key set (kids %s) until it loads", exc, _kids(seen.jwks))
            return seen.jwks
        settled = stamp is not None and read_at - stamp[3] / 1e9 >= _JWKS_RACY_SECONDS
        if seen is not None and jwks != seen.jwks:
            log.info("VEU_OIDC_JWKS_FILE: %s changed: trusting kids %s (were %s)", path, _kids(jwks),
                     _kids(seen.jwks))
        _jwks_reads[path] = _JwksRead(stamp, jwks, settled)
        return jwks


def oidc_config_from_settings(issuer: str, audience: str, jwks_file: str, role_claim: str) -> OidcConfig | None:
    if not issuer:
        return None
    if not jwks_file:
        raise AuthError("VEU_OIDC_JWKS_FILE: required when VEU_OIDC_ISSUER is set (the issuer's key set as JSON)")
    if not audience.strip():
        # Without it a JWT the issuer minted for any other application (with a role claim) would be accepted.
        raise AuthError("VEU_OIDC_AUDIENCE: required when VEU_OIDC_ISSUER is set (this API's client id at the issuer)")
    return OidcConfig(issuer=issuer, audience=audience, jwks=current_jwks(jwks_file), role_claim=role_claim,
                      jwks_file=jwks_file)


def verify_jwt(token: str, cfg: OidcConfig) -> Principal:
    """Verify signature (issuer's keys), issuer, audience and expiry; take the role from a claim."""
    import jwt

    try:
        header = jwt.get_unverified_header(token)
        keys = {k.get("kid"): k for k in cfg.key_set().get("keys", [])}
        jwk = keys.get(header.get("kid")) or (next(iter(keys.values())) if len(keys) == 1 else None)
        if jwk is None:
            raise AuthError("oidc: no key in the configured key set matches the token's kid")
        key = jwt.PyJWK(jwk).key
        if not cfg.audience:
            raise AuthError("oidc: no audience is configured, so no token can be checked as meant for this API")
        claims = jwt.decode(
            token, key=key, algorithms=["RS256", "ES256", "EdDSA", "PS256"],
            audience=cfg.audience, issuer=cfg.issuer,
            options={"require": ["exp", "iss", "sub", "aud"], "verify_aud": True},
        )
    except jwt.PyJWTError as exc:
        raise AuthError(f"oidc: {exc}") from None
    role = claims.get(cfg.role_claim)
    if role not in ROLES:
        raise AuthError(f"oidc: claim {cfg.role_claim!r} must be one of {', '.join(ROLES)}")
    # The subject is the audit actor (``oidc:<sub>``), the ``created_by`` of tokens it creates and the name whoami
    # and the dashboard show: held to what a token name is (create_token), or an override would read as another's.
    name = str(claims["sub"])
    why = unprintable("oidc: claim 'sub'", name)
    if why is not None:
        raise AuthError(why)
    if not name.strip():
        raise AuthError("oidc: claim 'sub' is blank; the issuer must name the user")
    return Principal(name=name, role=str(role), via="oidc")


# --- Route permissions ------------------------------------------------------------------------------

_WRITE = {"POST", "PUT", "PATCH", "DELETE"}
# Ordered (methods, path regex, permission); the first match wins. Paths outside /api/v1 are handled
# separately (dashboard pages, health, metrics, the webhook).
ROUTE_RULES: tuple[tuple[frozenset[str] | None, re.Pattern[str], str], ...] = (
    (None, re.compile(r"^/api/v1/tokens"), "admin"),
    (None, re.compile(r"^/api/v1/(exports|audit)(/|$)"), "audit"),
    (frozenset(_WRITE), re.compile(r"^/api/v1/(estimate|paths)(/|$)"), "read"),
    (frozenset(_WRITE), re.compile(r"^/api/v1/(whatif|what-if|reservations)(/|$)"), "plan"),
    (frozenset(_WRITE), re.compile(r"^/api/v1/authorizations/[^/]+/(whatif|what-if|reservations)(/|$)"), "plan"),
    (frozenset(_WRITE), re.compile(r"^/api/v1/caps/[^/]+/(whatif|what-if|reservations)(/|$)"), "plan"),
    (frozenset(_WRITE), re.compile(r"^/api/v1/(cases|controls|weights|determinations|deadlines)(/|$)"), "compliance"),
    # Model names may hold "/" (CUSTOMER/NAME lineages) and the route is ``/models/{name:path}/determinations``:
    # decide by the suffix, as the router does. Matching the first segment let compliance add runs to
    # ".../x/determinations/runs" and refused it determinations on "CUSTOMER/NAME". Only POST: a PATCH of that path
    # is ``PATCH /models/{name:path}`` of a model named ".../determinations", an admin's change.
    (frozenset({"POST"}), re.compile(r"^/api/v1/models/.+/determinations$"), "compliance"),
    (frozenset(_WRITE), re.compile(r"^/api/v1/"), "admin"),
    (None, re.compile(r"^/api/v1/"), "read"),
)


def required_permission(method: str, path: str) -> str | None:
    """The permission a request needs, or None for a path this matrix does not govern."""
    for methods, pattern, perm in ROUTE_RULES:
        if (methods is None or method.upper() in methods) and pattern.search(path):
            return perm
    return None
