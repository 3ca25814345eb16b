"""A dashboard page refuses a filter its API refuses, naming it, as the cases page does (session 23).

``/deadlines?status=overdu`` (a hand-edited or mistyped tab) listed every deadline under no tab, where
``GET /api/v1/deadlines?status=overdu`` and ``/cases?status=bogus`` are a 422 naming ``status``: a compliance
officer read the whole list as the overdue ones. ``/explain/...?part=bogus`` showed the numerator silently where
the API's explanation is a 422 naming ``part``.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    from agent.api.app import create_app
    from agent.demo import seed

    work = Path(tmp_path_factory.mktemp("s23d"))
    url = f"sqlite:///{work / 'demo.db'}"
    seed(url)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VEU_AUTH", "none")
        mp.setenv("VEU_SIGNING_KEY_FILE", str(work / "signing.key"))
        with TestClient(create_app(url), raise_server_exceptions=False) as c:
            yield c


def _message(page: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", page))


def test_a_mistyped_deadline_status_is_refused_naming_status_not_the_whole_list(client: TestClient) -> None:
    api = client.get("/api/v1/deadlines", params={"status": "overdu"})
    assert api.status_code == 422 and api.json()["detail"].startswith("status: ")
    r = client.get("/deadlines", params={"status": "overdu"})
    assert r.status_code == 422, r.text[-2000:]
    assert "text/html" in r.headers["content-type"]  # the error page with the navigation, not a JSON body
    text = _message(r.text)
    assert "status: 'overdu' is not one of upcoming, due, overdue, done" in text
    assert 'data-key="' not in r.text  # no list under the refusal


@pytest.mark.parametrize("status", ["", "upcoming", "due", "overdue", "done"])
def test_every_deadline_tab_still_shows(client: TestClient, status: str) -> None:
    assert client.get("/deadlines", params={"status": status}).status_code == 200


def test_an_unknown_explanation_part_is_refused_naming_part_as_the_api_does(client: TestClient) -> None:
    cap = "/aurora-uveu/uveu.outside_us.owned"
    api = client.get("/api/v1/caps" + cap.replace("/uveu.", "/explain/uveu."), params={"part": "bogus"})
    assert api.status_code == 422 and api.json()["detail"][0]["loc"] == ["query", "part"]
    r = client.get("/explain" + cap, params={"part": "bogus"})
    assert r.status_code == 422, r.text[-2000:]
    assert "part: " in _message(r.text) and "'numerator' or 'all'" in _message(r.text)
    for part in ("numerator", "all"):
        assert client.get("/explain" + cap, params={"part": part}).status_code == 200
    assert client.get("/explain" + cap).status_code == 200  # the overview's links send no part
