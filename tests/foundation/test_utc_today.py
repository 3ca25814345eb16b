"""'Today' is the UTC day everywhere (the store keeps UTC instants), whatever the host's time zone."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest


@pytest.fixture()
def restore_tz() -> Iterator[None]:
    old = os.environ.get("TZ")
    yield
    if old is None:
        os.environ.pop("TZ", None)
    else:
        os.environ["TZ"] = old
    time.tzset()


def test_default_as_of_is_the_utc_day_on_hosts_far_from_utc(restore_tz: None) -> None:
    from agent.api.deps import get_as_of
    from agent.cli._common import as_of
    from agent.inventory import instant_of

    # UTC+14 and UTC-12: at any instant, at least one of them is on another calendar day than UTC.
    for tz in ("Etc/GMT-14", "Etc/GMT+12"):
        os.environ["TZ"] = tz
        time.tzset()
        today = datetime.now(UTC).date()
        assert get_as_of(None) == today, tz
        assert as_of(None) == today, tz
        # The default instant is now, not the end of some other day.
        assert abs((instant_of(get_as_of(None)) - datetime.now(UTC)).total_seconds()) < 60, tz
