"""Which paths are served without credentials: named paths exactly, and only static files and Swagger UI's pages
below a prefix. A path that merely starts like a public one (``/validateX``, ``/metricsfoo``) is not public."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from agent.api.app import create_app

pytestmark = pytest.mark.auth


@pytest.fixture()
def client(db_url: str) -> TestClient:
    return TestClient(create_app(db_url), base_url="https://testserver", follow_redirects=False)


@pytest.mark.parametrize("path", ["/healthz", "/metrics", "/login", "/openapi.json"])
def test_the_public_paths_answer_without_credentials(client: TestClient, path: str) -> None:
    assert client.get(path).status_code == 200


@pytest.mark.parametrize("path", ["/validateX", "/metricsfoo", "/login-admin", "/docs-private", "/healthz2"])
def test_a_path_that_only_starts_like_a_public_one_asks_for_credentials(client: TestClient, path: str) -> None:
    r = client.get(path)
    # The dashboard's answer to a request without a session: to the sign-in page, not the app's 404.
    assert r.status_code == 303 and r.headers["location"].startswith("/login?next="), (r.status_code, r.text[:200])
