"""The role matrix read from the app's own routes (API and dashboard, including those left out of the OpenAPI
document), and the permission of a model route whose name ends in ``/determinations``."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from agent.api.app import create_app
from agent.api.routes.auth import _dashboard_permission
from agent.auth import PERMISSIONS, create_token, required_permission
from agent.store import session_scope

pytestmark = pytest.mark.auth

_UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}
_PUBLIC = {"/login", "/logout", "/validate"}


def _routes(app: Any) -> list[tuple[str, str]]:
    """Every (method, path) the app routes, walked from its router (FastAPI's included routers too)."""
    out = []
    for r in app.routes:
        contexts = r.effective_route_contexts() if hasattr(r, "effective_route_contexts") else [r]
        for c in contexts:
            out += [(m, c.path) for m in sorted(getattr(c, "methods", None) or ()) if m != "HEAD"]
    return out


def test_a_viewer_is_refused_every_write_route_of_the_app(db_url: str) -> None:
    app = create_app(db_url)
    with session_scope(db_url) as s:
        _, secret = create_token(s, role="viewer", name="v")
    c = TestClient(app, base_url="https://testserver")
    writes = [(m, p) for m, p in _routes(app) if m in _UNSAFE and p not in _PUBLIC]
    assert len(writes) > 20
    api = [(m, p) for m, p in writes if p.startswith("/api/v1/")]
    assert {m for m, _ in api} >= {"POST", "PATCH", "DELETE", "PUT"}
    r = c.post("/login", data={"token": secret, "next": "/"}, follow_redirects=False)
    assert r.status_code == 303
    failures = []
    for method, path in writes:
        concrete = path.replace("{paragraph:int}", "1").replace("{", "").replace("}", "").replace(":path", "")
        if path.startswith("/api/v1/"):
            need = required_permission(method, path)
            r = c.request(method, concrete, headers={"Authorization": f"Bearer {secret}"}, json={})
        else:
            need = _dashboard_permission(method, path)
            r = c.request(method, concrete, headers={"Origin": "https://testserver"}, data={})
        if need in PERMISSIONS["viewer"]:
            continue  # POST /api/v1/estimate: a computation, no write
        if r.status_code != 403:
            failures.append(f"{method} {path}: {r.status_code} (needs {need})")
    assert failures == []


@pytest.mark.parametrize("method", ["PATCH", "PUT", "DELETE"])
def test_only_posting_a_determination_is_compliances_not_other_methods_on_such_a_path(method: str) -> None:
    """PATCH /api/v1/models/{name:path} with the name ``Lumen/determinations`` changes that model (an admin's
    write); the matrix read the suffix as a determination and let compliance through to the route."""
    assert required_permission("POST", "/api/v1/models/Lumen/frontier/determinations") == "compliance"
    assert required_permission(method, "/api/v1/models/Lumen/determinations") == "admin"
