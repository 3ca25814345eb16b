"""A write's transaction commits before its answer is sent: a client told 201 reads what it wrote at once.

FastAPI runs a yield dependency's exit (here: the commit) after the response by default; a client that went on
to its next request as soon as it had the 201 raced the commit (seen in CI: a party just created was "not
registered" for the model posted next). Measured over real HTTP, since an in-process client waits for the whole
ASGI call either way.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx
import pytest
import uvicorn
from sqlmodel import Session

from agent.api.app import create_app
from tests.webhook.tlsutil import free_port

COMMIT_DELAY = 0.5


def test_a_created_party_can_be_read_by_the_very_next_request(db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    app = create_app(db_url)
    commit = Session.commit

    def slow_commit(self: Session, *a: Any, **kw: Any) -> None:
        time.sleep(COMMIT_DELAY)  # a busy store: the commit takes a while
        commit(self, *a, **kw)

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        monkeypatch.setattr(Session, "commit", slow_commit)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as c:
            t0 = time.monotonic()
            created = c.post("/api/v1/parties", json={"name": "Prompt Reader Ltd", "hq": "DE"})
            assert created.status_code == 201, created.text
            assert time.monotonic() - t0 >= COMMIT_DELAY  # the answer waited for the commit
            assert c.get("/api/v1/parties/Prompt Reader Ltd").status_code == 200
    finally:
        server.should_exit = True
        thread.join(10)
