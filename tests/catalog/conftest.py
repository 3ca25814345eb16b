"""Fixtures for the catalog tests: the built-in catalog, loaded once."""

from __future__ import annotations

import pytest

from agent.kb import load_catalog
from policies.catalog import Catalog


@pytest.fixture(scope="session")
def cat() -> Catalog:
    return load_catalog()
