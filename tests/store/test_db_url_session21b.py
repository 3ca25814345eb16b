"""A database URL whose kind SQLAlchemy knows but whose driver is not installed (``postgresql+psycopg2://``, what
many guides give) was reported as "unknown database kind 'postgresql+psycopg2'": the kind is known, the driver
is what is missing. "unknown database kind" is kept for a dialect that does not load (``postgres://``)."""

from __future__ import annotations

import pytest

from agent.store.db import URL_FORMS, make_engine
from policies.errors import PolicyError

_HEAD = "database URL (--db / VEU_DATABASE_URL): not usable: "


@pytest.mark.parametrize(("url", "kind", "module"), [
    ("postgresql+psycopg2://veu:s3cret@db.example/veu", "postgresql+psycopg2", "psycopg2"),
    ("postgresql+asyncpg://veu:s3cret@db.example/veu", "postgresql+asyncpg", "asyncpg"),
    ("mysql://veu:s3cret@db.example/veu", "mysql", "MySQLdb"),
])
def test_a_known_kind_without_its_driver_says_the_driver_is_not_installed(url: str, kind: str, module: str) -> None:
    with pytest.raises(PolicyError) as info:
        make_engine(url)
    text = str(info.value)
    assert text == (f"{_HEAD}the driver for database kind {kind!r} is not installed (Python module {module!r}); "
                    f"give {URL_FORMS}"), text
    assert "unknown" not in text and "s3cret" not in text


@pytest.mark.parametrize(("url", "kind"), [
    ("postgres://veu:s3cret@db.example/veu", "postgres"),
    ("postgresql+nosuchdriver://veu:s3cret@db.example/veu", "postgresql+nosuchdriver"),
    ("nosuchdb://veu:s3cret@db.example/veu", "nosuchdb"),
])
def test_a_dialect_that_does_not_load_is_an_unknown_kind(url: str, kind: str) -> None:
    with pytest.raises(PolicyError) as info:
        make_engine(url)
    assert str(info.value) == f"{_HEAD}unknown database kind {kind!r}; give {URL_FORMS}"
