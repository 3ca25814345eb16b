"""`veuctl serve --log-level`: the product's own log records follow it, not only uvicorn's."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest


@pytest.fixture()
def root_restored() -> Iterator[None]:
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    yield
    root.setLevel(level)
    root.handlers[:] = handlers


def test_the_webhooks_info_records_are_emitted_at_log_level_info_and_dropped_at_warning(root_restored: None) -> None:
    from agent.server import configure_logging

    configure_logging("info")
    assert logging.getLogger("veu.webhook").isEnabledFor(logging.INFO)
    configure_logging("warning")
    assert not logging.getLogger("veu.webhook").isEnabledFor(logging.INFO)
    assert logging.getLogger().handlers  # records have somewhere to go
