"""Session 24: a replica that cannot load its policy packs or catalog is not ready.

Every review on such a replica is refused with "configuration error" (503): answered 200 on /readyz, the pods of a
rolling update that ships a bad pack passed readiness and replaced the good ones, and the cluster's training jobs
were refused until someone read the logs. Readiness now loads the packs and the catalog, and says which file.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from agent.api.app import create_app, create_webhook_app

BAD_PACK = "id: operator-bad\nversion: '1'\nprovisions: []\n"


@pytest.mark.parametrize("factory", [create_app, create_webhook_app], ids=["api", "webhook-only"])
def test_a_replica_whose_policy_pack_does_not_load_is_not_ready(
        factory, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:  # type: ignore[no-untyped-def]
    client = TestClient(factory(db_url), raise_server_exceptions=False)
    assert client.get("/readyz").status_code == 200
    (tmp_path / "bad.yaml").write_text(BAD_PACK, encoding="utf-8")
    monkeypatch.setenv("VEU_POLICY_DIRS", str(tmp_path))
    with caplog.at_level(logging.ERROR, logger="veu.api"):
        r = client.get("/readyz")
        client.get("/readyz")
    assert r.status_code == 503, r.text
    # Served without credentials: the reason, not the file's path; the log names the file, once.
    assert r.text.startswith("not ready: configuration error") and str(tmp_path) not in r.text, r.text
    said = [m for m in caplog.messages if "bad.yaml" in m]
    assert len(said) == 1, caplog.messages
    assert client.get("/healthz").status_code == 200  # alive: restarting it would not mend the file


@pytest.mark.parametrize("factory", [create_app, create_webhook_app], ids=["api", "webhook-only"])
def test_a_replica_whose_catalog_file_does_not_load_is_not_ready(
        factory, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    client = TestClient(factory(db_url), raise_server_exceptions=False)
    bad = tmp_path / "catalog.yaml"
    bad.write_text("accelerators: [{id: x}]\n", encoding="utf-8")
    monkeypatch.setenv("VEU_CATALOG_FILES", str(bad))
    r = client.get("/readyz")
    assert r.status_code == 503 and r.text.startswith("not ready: configuration error"), r.text
    bad.write_bytes(b"accelerators: [{id: \xff}]\n")  # not UTF-8: refused naming the file, not a 500
    monkeypatch.setenv("VEU_CATALOG_FILES", str(bad) + ":")
    assert client.get("/readyz").status_code == 503


def test_a_replica_whose_store_refuses_it_is_not_ready_without_saying_the_database_s_details(
        tmp_path: Path) -> None:
    client = TestClient(create_app("postgresql+psycopg://nosuchuser@127.0.0.1:5432/test"),
                        raise_server_exceptions=False)
    r = client.get("/readyz")
    assert r.status_code == 503 and r.text == "not ready: store unavailable (the log says why)", r.text
