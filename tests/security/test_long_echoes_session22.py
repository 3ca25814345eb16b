"""An error message repeats a long value it was sent clipped, in every answer's ``detail`` (session 22).

A 3,000-character ``?country=`` (or ``as_of``, site, model, party, status) came back whole inside the message;
a 422's list form already clipped its ``input``. A short value is repeated as before.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from agent.api.fields import clip_echoes

LONG = "A" * 3000


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    from agent.api.app import create_app
    from agent.demo import seed

    url = f"sqlite:///{Path(tmp_path_factory.mktemp('s22echo')) / 'demo.db'}"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VEU_AUTH", "none")
        seed(url)
        with TestClient(create_app(url), raise_server_exceptions=False) as c:
            yield c


@pytest.mark.parametrize("path", [
    "/api/v1/holdings?as_of=", "/api/v1/holdings?country=", "/api/v1/holdings?accelerator=",
    "/api/v1/holdings?site=", "/api/v1/sites?country=", "/api/v1/cases?status=", "/api/v1/inventory/holdings?owner=",
    "/api/v1/models/", "/api/v1/parties/", "/api/v1/deadlines?status=",
])
def test_a_long_value_is_repeated_clipped_with_its_length(client: TestClient, path: str) -> None:
    r = client.get(path + LONG)
    assert r.status_code in (404, 422), r.text[:300]
    detail = r.json()["detail"]
    assert isinstance(detail, str)
    assert len(detail) < 700 and "(3,000 characters)" in detail, detail[:400]
    assert detail.split(":", 1)[0] in ("as_of", "country", "accelerator", "site", "status", "owner", "model", "party")


def test_a_short_value_is_repeated_whole(client: TestClient) -> None:
    detail = client.get("/api/v1/holdings?country=Narnia").json()["detail"]
    assert "'Narnia'" in detail and "characters)" not in detail


def test_clipping_keeps_the_quotes_and_leaves_short_text_alone() -> None:
    assert clip_echoes("x: 'abc' is not known") == "x: 'abc' is not known"
    out = clip_echoes(f'x: "{LONG}" is not known; and {"b" * 400} too')
    assert out.startswith('x: "' + "A" * 120 + '…" (3,000 characters) is not known')
    assert "b" * 120 + "… (400 characters) too" in out


def test_a_value_clipped_again_keeps_its_first_length() -> None:
    once = clip_echoes(f"as_of: '{LONG}' is not a date")
    twice = clip_echoes(once, longer_than=60, keep=40)
    assert twice == "as_of: '" + "A" * 40 + "…' (3,000 characters) is not a date"
