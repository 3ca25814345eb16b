"""Every /api/v1 answer writes a chip count as the exports do (agent.exports.base.chip_count): a whole count as an
int (500, never 500.0), a fractional one (MIG slices) as the exact fraction it stands for (seven 1/7 slices are 1,
not 0.9999999999999998). The test walks every GET route of the API without path parameters (so a new one is walked
too), the per-name routes, and the POST answers that carry a count."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from sqlmodel import select

from agent.api.app import create_app
from agent.exports.base import chip_count
from agent.store import session_scope
from agent.store.tables.core import Holding, Site
from tests.caps.conftest import seed_fleet

AS_OF = "2025-06-01"
COUNT_KEYS = {"count", "chips"}
# The audit trail answers each entry's payload as it was recorded and hash-chained, not a count computed now.
AS_RECORDED = {"/api/v1/audit/log"}
T0 = datetime(2025, 3, 1, tzinfo=UTC)


@pytest.fixture()
def client(db_url: str) -> Iterator[TestClient]:
    seed_fleet(db_url)
    with session_scope(db_url) as s:
        sin = s.exec(select(Site).where(Site.name == "sin")).one()
        for i in range(7):  # one A100 cut in seven 1g.10gb MIG slices
            s.add(Holding(source="test", external_id=f"mig-{i}", site_id=sin.id, accelerator="a100-sxm4-80gb",
                          count=1 / 7, first_seen=T0))
        s.add(Holding(source="test", external_id="mig-odd", site_id=sin.id, accelerator="a100-sxm4-80gb",
                      count=3 / 7, first_seen=T0))
    with TestClient(create_app(db_url)) as c:
        yield c


def _counts(doc: Any, where: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(doc, dict):
        for k, v in doc.items():
            if k in COUNT_KEYS and isinstance(v, int | float) and not isinstance(v, bool):
                yield f"{where}.{k}", v
            else:
                yield from _counts(v, f"{where}.{k}")
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield from _counts(v, f"{where}[{i}]")


def _bad(path: str, doc: Any) -> list[str]:
    out = []
    for at, v in _counts(doc):
        want = chip_count(v)
        if type(v) is not type(want) or v != want:
            out.append(f"{path}{at}: {v!r} (an export writes {want!r})")
    return out


def test_every_api_answer_writes_chip_counts_as_the_exports_do(client: TestClient) -> None:
    seen: dict[str, list[tuple[str, Any]]] = {}
    bad: list[str] = []

    def walk(path: str, doc: Any) -> None:
        seen[path] = list(_counts(doc))
        bad.extend(_bad(path, doc))

    def get(path: str, **params: Any) -> Any:
        r = client.get(path, params={"as_of": AS_OF, **params})
        assert r.status_code == 200, (path, r.text)
        return r.json()

    # Answers to changes first, so that the reads below carry a shipment and a reservation.
    for body in ({"date": "2025-05-01", "consignee": "Lumen", "destination": "SG", "chip": "h100", "count": 500,
                  "via": "licence"},
                 {"date": "2025-05-02", "consignee": "Lumen", "destination": "SG", "chip": "h100", "count": 64.0,
                  "via": "lpp"}):
        r = client.post("/api/v1/shipments", json=body)
        assert r.status_code == 201, r.text
        walk(f"POST /api/v1/shipments ({body['count']!r})", r.json())
    r = client.post("/api/v1/reservations", json={"authorization": "aurora", "count": 8, "chip": "h100",
                                                  "site": "iad", "planned_for": AS_OF})
    assert r.status_code == 201, r.text
    walk("POST /api/v1/reservations", r.json())
    r = client.post("/api/v1/whatif", json={"authorization": "aurora", "n": 16, "chip": "h100", "site": "dxb",
                                            "as_of": AS_OF})
    assert r.status_code == 200, r.text
    walk("POST /api/v1/whatif", r.json())

    # Every GET route without a path parameter that answers JSON.
    schema = client.app.openapi()  # type: ignore[attr-defined]
    for path, ops in sorted(schema["paths"].items()):
        if "get" not in ops or "{" in path or not path.startswith("/api/v1/") or path in AS_RECORDED:
            continue
        r = client.get(path, params={"as_of": AS_OF})
        if r.status_code != 200 or not r.headers.get("content-type", "").startswith("application/json"):
            continue
        walk(f"GET {path}", r.json())
        for params in ({"limit": 1000}, {"status": ""}):  # a second page size, reservations of every status
            r = client.get(path, params={"as_of": AS_OF, **params})
            if r.status_code == 200 and r.headers.get("content-type", "").startswith("application/json"):
                walk(f"GET {path} {params}", r.json())

    # The routes with a name in them: each authorization's caps and the explanation of every cap.
    for name in ("aurora", "falcon-ae", "allocations"):
        caps = get(f"/api/v1/caps/{name}")
        walk(f"GET /api/v1/caps/{name}", caps)
        for c in caps["caps"]:
            for part in ("numerator", "all"):
                path = f"/api/v1/caps/{name}/explain/{quote(c['id'], safe='')}"
                walk(f"GET {path}?part={part}", get(path, part=part))
    for site in ("sin", "iad"):
        walk(f"GET /api/v1/inventory/installed-base?site={site}", get("/api/v1/inventory/installed-base", site=site))

    assert not bad, "chip counts written unlike the exports:\n" + "\n".join(bad)
    # The walk met the counts it is about: whole ones and MIG fractions, in each answer that carries holdings.
    for path in ("GET /api/v1/sites", "GET /api/v1/holdings", "GET /api/v1/holdings/summary", "GET /api/v1/caps",
                 "GET /api/v1/inventory/holdings", "GET /api/v1/inventory/installed-base", "GET /api/v1/shipments",
                 "GET /api/v1/reservations", "POST /api/v1/shipments (500)"):
        assert any(type(v) is int for _, v in seen[path]), (path, seen[path])
    for path in ("GET /api/v1/holdings", "GET /api/v1/inventory/holdings", "GET /api/v1/inventory/installed-base"):
        assert any(type(v) is float for _, v in seen[path]), (path, seen[path])
    sin = next(x for x in client.get("/api/v1/sites", params={"as_of": AS_OF}).json()["items"] if x["name"] == "sin")
    assert sin["count"] == 1 + 3 / 7 == chip_count(10 / 7)
