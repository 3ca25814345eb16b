"""The dashboard's /cases note for a past date says which reading its statuses are (session 24, review R9).

The note said "status and answers are those on record then", but a case whose answers lapse during that day reads
"expired" on the page (the red-flag register's end-of-day reading) while admission on that date, before the lapse,
still counted them on record. The note now says the statuses are those at the end of that day (UTC), and that answers
lapsing during the day read expired though admission earlier that day still counted them.
"""

from __future__ import annotations

import html
import re

import pytest
from fastapi.testclient import TestClient

from agent.api.app import create_app
from tests.webhook.test_cases_paging_session24S import seed_history


@pytest.fixture()
def client(db_url: str) -> TestClient:
    seed_history(db_url)  # case #1's answers lapse at noon on 2026-09-01
    return TestClient(create_app(db_url))


def _note(page: str) -> str:
    m = re.search(r'<p class="muted" id="as-of-note">(.*?)</p>', page, re.S)
    assert m, "no as-of note on a past date"
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", m.group(1))).split())


def test_the_as_of_note_says_answers_lapsing_that_day_read_expired_though_admission_earlier_counted_them(
    client: TestClient,
) -> None:
    page = client.get("/cases", params={"status": "expired", "as_of": "2026-09-01"}).text
    assert 'id="case-1"' in page  # lapsed at noon that day: expired at its end
    note = _note(page)
    assert "as they stood at the end of 2026-09-01 (UTC)" in note
    assert "on record then" not in note  # "then" did not say which instant of the day
    assert "lapsed during 2026-09-01 read expired" in note
    assert "admission earlier that day still counted them" in note
