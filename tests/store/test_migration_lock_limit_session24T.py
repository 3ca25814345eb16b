"""VEU_MIGRATION_LOCK_TIMEOUT above PostgreSQL's lock_timeout limit (2147483647 ms, about 24.8 days) is refused when
read, naming the setting and the maximum: it became a `SET LOCAL lock_timeout` the server rejects, and every migration
failed with an error that named neither."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from agent.store.db import make_engine
from agent.store.migrations.lock_timeout import (
    TIMEOUT_SETTING,
    LockWait,
    MigrationSettingError,
    bounded,
    lock_wait,
)


@pytest.mark.parametrize("value", ["2147484", "2147483.648", "1e12"])
def test_a_lock_timeout_above_postgresqls_limit_is_refused_naming_the_setting_and_the_maximum(value: str) -> None:
    with pytest.raises(MigrationSettingError) as err:
        lock_wait(environ={TIMEOUT_SETTING: value})
    message = str(err.value)
    assert message.startswith(f"{TIMEOUT_SETTING}:"), message
    assert value in message and "2147483.647" in message, message


def test_an_alembic_x_lock_timeout_above_the_limit_is_refused_too() -> None:
    with pytest.raises(MigrationSettingError, match=r"2147483\.647"):
        lock_wait({"lock_timeout": "3000000"}, environ={})


def test_the_largest_lock_timeout_postgresql_takes_is_accepted() -> None:
    assert lock_wait(environ={TIMEOUT_SETTING: "2147483.647"}) == LockWait(2147483.647, 5)
    assert lock_wait(environ={TIMEOUT_SETTING: "600"}) == LockWait(600.0, 5)


@pytest.mark.postgres
def test_the_largest_accepted_lock_timeout_is_one_postgresql_sets(pg_url: str) -> None:
    wait = lock_wait(environ={TIMEOUT_SETTING: "2147483.647"})
    eng = make_engine(pg_url)
    seen: list[str] = []
    try:
        with eng.connect() as conn:
            def run() -> None:
                with conn.begin():
                    seen.append(str(conn.execute(text("SHOW lock_timeout")).scalar()))

            bounded(conn, wait, run)
    finally:
        eng.dispose()
    assert seen and seen[0] != "0", seen
