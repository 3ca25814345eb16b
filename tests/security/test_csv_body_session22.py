"""The one endpoint that reads another body type than JSON is not told to send JSON (session 22).

``POST /api/v1/weights/access`` takes ``text/csv``. The 415 for a JSON body sent as another type answered it
too: an empty CSV got "send a JSON object with Content-Type: application/json", a non-UTF-8 one a 415.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    from agent.api.app import create_app
    from agent.demo import seed

    url = f"sqlite:///{Path(tmp_path_factory.mktemp('s22csv')) / 'demo.db'}"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VEU_AUTH", "none")
        seed(url)
        with TestClient(create_app(url), raise_server_exceptions=False) as c:
            yield c


def _post(client: TestClient, body: bytes) -> tuple[int, str]:
    r = client.post("/api/v1/weights/access", content=body, headers={"content-type": "text/csv"})
    return r.status_code, r.text


def test_an_empty_csv_is_not_told_to_send_json(client: TestClient) -> None:
    status, text = _post(client, b"")
    assert status == 422 and "JSON" not in text


def test_a_csv_that_is_not_utf8_is_named_as_such(client: TestClient) -> None:
    status, text = _post(client, b"\xff\xfe")
    assert status == 422 and "UTF-8" in text and "JSON" not in text


def test_a_csv_header_is_read(client: TestClient) -> None:
    assert _post(client, b"timestamp,model,principal,action\n")[0] == 200


def test_a_json_body_sent_as_csv_to_a_json_endpoint_is_still_a_415(client: TestClient) -> None:
    r = client.post("/api/v1/parties", content=b'{"name": "X", "country": "US"}', headers={"content-type": "text/csv"})
    assert r.status_code == 415 and "application/json" in r.text
