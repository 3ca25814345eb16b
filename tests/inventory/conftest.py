"""Fixtures for the inventory tests: moto behind a fault proxy, parties registered in a fresh store."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from agent.store import session_scope
from tests.inventory.awsfake import AwsFake
from tests.inventory.gcpfake import ComputeFake


@pytest.fixture()
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[AwsFake]:
    fake = AwsFake().start()
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test-secret-never-logged")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", fake.url)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture()
def store(db_url: str) -> str:
    """A fresh store with an owner and an operator party registered."""
    from agent.parties import add_party

    with session_scope(db_url) as s:
        add_party(s, "Acme Cloud", "US")
        add_party(s, "Acme Ops", "IE")
    return db_url


@pytest.fixture()
def gce() -> Iterator[ComputeFake]:
    """A local Compute Engine REST API (tests.inventory.gcpfake); files with their own ``gce`` keep theirs."""
    fake = ComputeFake().start()
    yield fake
    fake.stop()
