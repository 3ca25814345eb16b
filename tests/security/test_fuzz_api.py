"""Fuzz every operation of the app's own OpenAPI document with schemathesis (in-process ASGI).

Each operation gets a bounded number of generated requests (valid and schema-violating); the checks are
"never a 5xx", "a documented response matches its schema" and "the content type is the declared one".
After the run the audit chain must still verify: whatever the fuzzer managed to write, it wrote whole.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance

from agent import parties
from agent.api.app import create_app
from agent.audit import verify_chain
from agent.store import session_scope

MAX_EXAMPLES = 8


@pytest.fixture(scope="module")
def fuzz_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url = f"sqlite:///{Path(tmp_path_factory.mktemp('fuzz')) / 'veu.db'}"
    with session_scope(url) as s:
        parties.add_party(s, "Emirates AI", "AE", None, ["tenant-ae"])
        parties.add_party(s, "US Lab", "US", None, ["tenant-us"])
    yield url
    from agent.store.db import _engines, _lock

    with _lock:
        eng = _engines.pop(url, None)
    if eng is not None:
        eng.dispose()


@pytest.fixture(scope="module")
def api_schema(fuzz_store: str) -> Any:
    # VEU_AUTH is "none" for unmarked tests (tests/conftest.py), so the fuzzer reaches every handler.
    mp = pytest.MonkeyPatch()
    mp.setenv("VEU_AUTH", "none")
    try:
        app = create_app(fuzz_store)
    finally:
        mp.undo()
    return schemathesis.openapi.from_asgi("/openapi.json", app)


def _operations() -> list[tuple[str, str]]:
    # Collected from the app itself, so a new route is fuzzed without editing this file. (schemathesis'
    # own pytest loader, ``from_fixture``, does not run under pytest 9, hence plain parametrize.)
    spec = create_app("sqlite://").openapi()
    return [(m.upper(), p) for p, ops in sorted(spec["paths"].items()) for m in sorted(ops)]


OPERATIONS = _operations()
CHECKS = [not_a_server_error, response_schema_conformance, content_type_conformance]


def test_the_openapi_document_lists_the_api_and_the_webhook() -> None:
    paths = {p for _, p in OPERATIONS}
    assert "/validate" in paths and len([p for p in paths if p.startswith("/api/v1/")]) >= 40


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=["valid", "invalid"])
@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_api_operation_never_500s_and_answers_as_documented(
    api_schema: Any, method: str, path: str, mode: GenerationMode,
) -> None:
    operation = api_schema[path][method]

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    def run(case: Any) -> None:
        case.call_and_validate(checks=CHECKS)

    try:
        run()
    except Unsatisfiable:
        pytest.skip(f"{method} {path} takes no input that can be made invalid")


def test_fuzzing_left_the_audit_chain_intact(fuzz_store: str) -> None:
    # Runs after the parametrized fuzz (same module, file order): every write the fuzzer got through
    # was recorded whole, so the chain still verifies.
    with session_scope(fuzz_store) as s:
        result = verify_chain(s)
    assert result.ok, result
