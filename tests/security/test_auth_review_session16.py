"""Review of the session cookie's name behind proxies and of ``last_used_at`` bookkeeping: guards for what holds.

The session cookie is ``__Host-veu_session`` (Secure) when the request's scheme is https. In the chart the API pod
serves TLS itself and the Ingress re-encrypts to it, so the scheme is https from the connection, whatever
X-Forwarded-Proto the ingress controller adds (uvicorn trusts that header only from FORWARDED_ALLOW_IPS, loopback
by default). A `veuctl serve` without TLS behind a TLS-terminating proxy gets the prefixed cookie by listing the
proxy in FORWARDED_ALLOW_IPS. The webhook's /validate never reads or writes api_token.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import event

from agent.auth import create_token
from agent.server import build_config
from agent.store import get_engine, session_scope
from tests.webhook.tlsutil import CA

pytestmark = pytest.mark.auth

INGRESS_POD = "10.42.0.7"  # the ingress controller: a pod address, not loopback


def _token(url: str) -> str:
    with session_scope(url) as s:
        _, secret = create_token(s, role="viewer", name="test-viewer")
    return secret


def _served(url: str, tmp_path: Path, *, tls: bool) -> Any:
    """The ASGI stack `veuctl serve` hands uvicorn (its proxy-headers middleware included)."""
    cert = key = None
    if tls:
        cert, key = str(tmp_path / "tls.crt"), str(tmp_path / "tls.key")
        CA().issue(Path(cert), Path(key))
    return build_config("127.0.0.1", 8444, cert, key, url, "warning", webhook=False).loaded_app


def _requests(app: Any, base: str, client: str, calls: list[tuple[str, str, dict[str, Any]]]) -> list[httpx.Response]:
    """Send ``calls`` (method, path, httpx keywords) in order from ``client``, keeping cookies like a browser."""
    async def run() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app, client=(client, 40000))
        async with httpx.AsyncClient(transport=transport, base_url=base, follow_redirects=False) as c:
            return [await c.request(method, path, **kw) for method, path, kw in calls]

    return asyncio.run(run())


def _sign_in(app: Any, base: str, client: str, secret: str, proto: str) -> tuple[httpx.Response, httpx.Response]:
    """Sign in, then open the dashboard with the cookie it set (as the browser, on the proxy's scheme, sends it);
    both with X-Forwarded-Proto ``proto``."""
    fwd = {"X-Forwarded-Proto": proto, "X-Forwarded-For": "203.0.113.9"}
    (login,) = _requests(app, base, client, [("POST", "/login", {"data": {"token": secret, "next": "/"},
                                                                  "headers": fwd})])
    cookie = login.headers["set-cookie"].split(";", 1)[0]
    (page,) = _requests(app, base, client, [("GET", "/", {"headers": {**fwd, "Cookie": cookie}})])
    return login, page


def _cookie(response: httpx.Response) -> tuple[str, str]:
    """The Set-Cookie's name and its lower-cased attributes."""
    header = response.headers["set-cookie"]
    return header.split("=", 1)[0], header.lower()


def test_behind_the_charts_reencrypting_ingress_the_session_cookie_is_host_prefixed_and_secure(
        db_url: str, tmp_path: Path) -> None:
    """TLS at the pod: an ingress controller's X-Forwarded-Proto (http when its own listener is plain) changes
    nothing, so a browser on the Ingress's https:// keeps a cookie no sibling subdomain can plant."""
    app = _served(db_url, tmp_path, tls=True)
    login, page = _sign_in(app, "https://veu.example.com", INGRESS_POD, _token(db_url), "http")
    assert login.status_code == 303
    name, attrs = _cookie(login)
    assert name == "__Host-veu_session" and "; secure" in attrs and "path=/" in attrs and "domain" not in attrs
    assert page.status_code == 200


def test_a_plain_http_server_takes_the_scheme_only_from_proxies_in_forwarded_allow_ips(
        db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FORWARDED_ALLOW_IPS", INGRESS_POD)  # read by uvicorn when `veuctl serve` configures it
    app = _served(db_url, tmp_path, tls=False)
    login, page = _sign_in(app, "http://veu.example.com", INGRESS_POD, _token(db_url), "https")
    name, attrs = _cookie(login)
    assert name == "__Host-veu_session" and "; secure" in attrs and page.status_code == 200
    # Any other address claiming https is not believed: plain HTTP, the plain cookie without Secure.
    login, page = _sign_in(app, "http://veu.example.com", "10.42.0.8", _token(db_url), "https")
    name, attrs = _cookie(login)
    assert name == "veu_session" and "secure" not in attrs and page.status_code == 200


def test_the_webhook_path_never_reads_or_writes_api_token(db_url: str, tmp_path: Path) -> None:
    """/validate is public: no bearer check, no session, no last_used_at write (even with a token in the request)."""
    secret = _token(db_url)
    app = build_config("127.0.0.1", 8443, None, None, db_url, "warning").loaded_app
    seen: list[str] = []

    def watch(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if "api_token" in statement.lower():
            seen.append(statement)

    engine = get_engine(db_url)
    event.listen(engine, "before_cursor_execute", watch)
    try:
        review = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                  "request": {"uid": "u1", "kind": {"group": "", "version": "v1", "kind": "Pod"},
                              "operation": "CREATE", "namespace": "default",
                              "object": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
                                         "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}}
        (r,) = _requests(app, "https://veu.example.com", INGRESS_POD, [
            ("POST", "/validate", {"json": review, "headers": {"Authorization": f"Bearer {secret}"}})])
    finally:
        event.remove(engine, "before_cursor_execute", watch)
    assert r.status_code == 200 and r.json()["response"]["allowed"] is True
    assert seen == []
