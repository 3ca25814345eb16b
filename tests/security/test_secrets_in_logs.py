"""Secrets never reach the logs: ``veuctl serve`` at debug level and the CLI's error output are grepped.

The server runs as a subprocess with a database URL that carries a password, a session secret and an
OIDC configuration in its environment; requests carry valid, revoked, malformed and forged bearer
credentials (API tokens and JWTs), tokens in query strings and on the login form, and requests that make
the store fail. Everything the process writes to stdout and stderr is then searched for each secret.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from agent.auth import create_token, revoke_token
from agent.store import session_scope
from tests.webhook.conftest import job, review, seed

ROOT = Path(__file__).resolve().parents[2]
DB_PASSWORD = "Db-Pa55w0rd-9f8e7d"
SESSION_SECRET = "session-secret-4c1b2a99e0f1"


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _with_password(url: str) -> str:
    # The test server trusts local connections, so a password in the URL is accepted and ignored.
    scheme, rest = url.split("://", 1)
    user, host = rest.split("@", 1)
    return f"{scheme}://{user}:{DB_PASSWORD}@{host}"


class Served:
    def __init__(self, db_url: str, env: dict[str, str], log: Path) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        full = {**os.environ, **env, "VEU_DATABASE_URL": db_url, "VEU_AUTH": "token",
                "VEU_SESSION_SECRET": SESSION_SECRET, "PYTHONUNBUFFERED": "1"}
        self.out = log.open("wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "agent", "serve", "--port", str(self.port),
                                      "--log-level", "debug"], cwd=ROOT, env=full, stdout=self.out,
                                     stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.stop()
                raise AssertionError(f"veuctl serve did not start: {log.read_text()[-2000:]}")
            time.sleep(0.1)

    def stop(self) -> str:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self.out.close()
        return self.log.read_text(errors="replace")


@pytest.fixture()
def oidc_env(tmp_path: Path) -> Iterator[tuple[dict[str, str], Any]]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    jwk.update(kid="k1", use="sig", alg="RS256")
    (tmp_path / "jwks.json").write_text(json.dumps({"keys": [jwk]}))
    env = {"VEU_OIDC_ISSUER": "https://issuer.example", "VEU_OIDC_AUDIENCE": "veu-governor",
           "VEU_OIDC_JWKS_FILE": str(tmp_path / "jwks.json")}

    def sign(**claims: Any) -> str:
        base = {"iss": "https://issuer.example", "aud": "veu-governor", "sub": "alice",
                "exp": int(time.time()) + 300, "veu_role": "auditor"}
        return jwt.encode({**base, **claims}, key, algorithm="RS256", headers={"kid": "k1"})

    yield env, sign


def test_server_logs_carry_no_token_jwt_session_secret_or_database_password(
    pg_url: str, tmp_path: Path, oidc_env: tuple[dict[str, str], Any],
) -> None:
    env, sign = oidc_env
    seed(pg_url)
    with session_scope(pg_url) as s:
        _, admin = create_token(s, role="admin", name="ci-admin")
        _, viewer = create_token(s, role="viewer", name="ci-viewer")
        row, revoked = create_token(s, role="admin", name="ci-revoked")
        revoke_token(s, row.prefix)
    good_jwt, expired_jwt = sign(), sign(exp=int(time.time()) - 60)
    forged = jwt.encode({"iss": "https://issuer.example", "aud": "veu-governor", "sub": "mallory",
                         "exp": int(time.time()) + 300, "veu_role": "admin"},
                        rsa.generate_private_key(public_exponent=65537, key_size=2048), algorithm="RS256",
                        headers={"kid": "k1"})
    malformed = "veu_0123456789ab_" + "Z" * 40
    secrets = {"admin token": admin, "viewer token": viewer, "revoked token": revoked, "jwt": good_jwt,
               "expired jwt": expired_jwt, "forged jwt": forged, "malformed token": malformed,
               "db password": DB_PASSWORD, "session secret": SESSION_SECRET}

    srv = Served(_with_password(pg_url), env, tmp_path / "serve.log")
    try:
        with httpx.Client(base_url=srv.url, timeout=10, follow_redirects=False) as c:
            statuses = {}
            for name, cred in (("admin", admin), ("viewer", viewer), ("revoked", revoked), ("jwt", good_jwt),
                               ("expired", expired_jwt), ("forged", forged), ("malformed", malformed)):
                statuses[name] = c.get("/api/v1/whoami", headers={"Authorization": f"Bearer {cred}"}).status_code
                c.post("/api/v1/tokens", json={"role": "viewer"}, headers={"Authorization": f"Bearer {cred}"})
            assert statuses == {"admin": 200, "viewer": 200, "revoked": 401, "jwt": 200, "expired": 401,
                                "forged": 401, "malformed": 401}
            # Tokens where they do not belong: query strings, cookies, the login form.
            c.get(f"/api/v1/whoami?token={admin}&access_token={good_jwt}")
            c.get("/", cookies={"veu_session": admin})
            r = c.post("/login", data={"token": viewer, "next": "/"})
            assert r.status_code == 303
            c.post("/login", data={"token": revoked, "next": "/"})
            # Requests that make the store fail (logged with the error), carrying credentials.
            for method, path, body in (("GET", "/api/v1/cases?customer=a%00b", None),
                                       ("POST", "/validate", review(job("x\x00y"))),
                                       ("POST", "/validate", review(job("ok")))):
                # a server that drops the connection still must not have logged the credential
                with contextlib.suppress(httpx.TransportError):
                    c.request(method, path, json=body, headers={"Authorization": f"Bearer {admin}"})
            created = c.post("/api/v1/tokens", json={"role": "viewer", "name": "new"},
                             headers={"Authorization": f"Bearer {admin}"})
            assert created.status_code == 201
            secrets["created token"] = created.json()["token"]
    finally:
        log = srv.stop()
    # The server did log (debug level): the grep is over a real log, not an empty file.
    assert "Uvicorn running" in log or "Application startup complete" in log, log[:500]
    leaked = [name for name, value in secrets.items() if value in log]
    assert leaked == [], f"secrets in the server log: {leaked}"


def test_store_unavailable_log_names_the_host_but_not_the_password(tmp_path: Path) -> None:
    url = f"postgresql://veu:{DB_PASSWORD}@127.0.0.1:{_free_port()}/veu"
    srv = Served(url, {}, tmp_path / "serve.log")
    try:
        with httpx.Client(base_url=srv.url, timeout=20) as c:
            r = c.post("/validate", json=review(job("x"), uid="u1"))
            body = r.text
            c.get("/readyz")
    finally:
        log = srv.stop()
    assert "store unavailable" in body and DB_PASSWORD not in body
    assert "store unavailable" in log and "127.0.0.1" in log  # useful to the operator ...
    assert DB_PASSWORD not in log  # ... without the credential


@pytest.mark.parametrize("url", [
    f"postgresql://veu:{DB_PASSWORD}@127.0.0.1:1/veu",
    f"postgresql://veu:{DB_PASSWORD}@127.0.0.1:notaport/veu",
    f"postgresql+nosuchdriver://veu:{DB_PASSWORD}@127.0.0.1/veu",
    f"mysql://veu:{DB_PASSWORD}@127.0.0.1/veu",
], ids=["unreachable", "bad-port", "unknown-driver", "missing-driver"])
@pytest.mark.parametrize("how", ["--db", "env"])
def test_cli_database_errors_never_print_the_password(url: str, how: str) -> None:
    args = [sys.executable, "-m", "agent", "cases", "list"] + (["--db", url] if how == "--db" else [])
    env = {**os.environ, **({"VEU_DATABASE_URL": url} if how == "env" else {})}
    p = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert p.returncode != 0
    assert DB_PASSWORD not in p.stdout + p.stderr
    # One clear line naming the problem, not a traceback.
    assert len(p.stderr.strip().splitlines()) == 1, p.stderr[-800:]
    assert p.stderr.startswith("error: ")
