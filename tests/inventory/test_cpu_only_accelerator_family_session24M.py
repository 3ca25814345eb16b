"""A ``count: 0`` row never makes an accelerator-family type CPU-only in the collectors (session 24M, review R3).

The catalog refuses a CPU-only row replacing a row with chips; a type of an accelerator family (AWS ``p``, ``g``,
``gr``, ``trn``, ``inf``, ``dl``; GCE ``a*``, ``g2``+, ``ct*``, ``tpu*``) that no row gives chips can still be
catalogued ``count: 0``. Taken at its word, the row took that type's VMs out of every count and a complete listing
retired their chips. The collectors report such a type as unknown instead: its VMs stay held as last seen, the scope
is partial and the error names the type and the row to correct.
"""

from __future__ import annotations

from typing import Any

import pytest

from agent import kb
from agent.collectors.gcp import UncataloguedMachineType, instance_accelerators_gcp
from agent.inventory import sync
from policies.catalog import Catalog
from tests.inventory.awsfake import AwsFake, run, seed_client
from tests.inventory.gcpfake import ComputeFake, instance
from tests.inventory.test_aws_collector import ACCOUNT_A, _collector, _live


def _catalog(provider: str, drop: str, cpu_only: dict[str, str]) -> Catalog:
    """The built-in catalog without ``drop`` (a type newer than the catalog), plus an operator file stating
    ``cpu_only`` types (type -> source) to hold no accelerators."""
    docs: list[tuple[str, Any]] = []
    for name in kb.BUILTIN_FILES:
        data = kb._read(kb.DATA_DIR / name)
        if isinstance(data, dict) and "instance_types" in data:
            data["instance_types"][provider].pop(drop, None)
        docs.append((name, data))
    rows = {t: {"count": 0, "source": src} for t, src in cpu_only.items()}
    docs.append(("op.yaml", {"instance_types": {provider: rows}}))
    return Catalog.from_data(*docs)


def test_an_aws_accelerator_family_type_catalogued_with_no_accelerators_is_reported_not_dropped(
    aws: AwsFake, store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    ec2 = seed_client(aws.moto_url, "ec2", "us-east-1")
    trn = run(ec2, "trn2u.48xlarge", 1)
    cpu = run(ec2, "m7i.large", 1)
    assert sync(_collector(["us-east-1"]), store).status == "ok"
    assert _live(store)[f"{ACCOUNT_A}:{trn[0]}"].count == 16

    cat = _catalog("aws", "trn2u.48xlarge", {"trn2u.48xlarge": "typo", "m7i.large": "m7i product page"})
    monkeypatch.setattr(kb, "catalog", lambda: cat)
    summary = sync(_collector(["us-east-1"]), store)

    scope = {x.scope: x for x in summary.scopes}[f"{ACCOUNT_A}/us-east-1"]
    assert summary.status == "partial" and not scope.complete
    err = scope.error or ""
    assert "trn2u.48xlarge" in err and trn[0] in err and "count: 0" in err, err
    assert "m7i.large" not in err and cpu[0] not in err, err  # a CPU-only row for a CPU family is still believed
    assert _live(store)[f"{ACCOUNT_A}:{trn[0]}"].count == 16  # not retired on the row's word


def test_a_gce_accelerator_family_type_catalogued_with_no_accelerators_is_reported_not_dropped(
    gce: ComputeFake, store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from agent.collectors.base import build

    gce.instances["ml"] = [instance("ml", "a3", "us-central1-a", "a3-highgpu-8g", iid=1),
                           instance("ml", "web", "us-central1-a", "n2-standard-8", iid=2),
                           instance("ml", "t4", "us-central1-a", "n1-standard-8", accelerators=[("nvidia-tesla-t4", 2)],
                                    iid=3)]
    collector = build("gcp", {"api_endpoint": gce.url, "anonymous": True, "projects": [{"id": "ml"}]})
    assert sync(collector, store).status == "ok"
    assert _live(store)["ml/1"].count == 8 and _live(store)["ml/3"].count == 2

    cat = _catalog("gcp", "a3-highgpu-8g", {"a3-highgpu-8g": "typo", "n2-standard-8": "GCE general-purpose types"})
    monkeypatch.setattr(kb, "catalog", lambda: cat)
    with pytest.raises(UncataloguedMachineType) as caught:
        instance_accelerators_gcp(gce.instances["ml"][0])
    assert "count: 0" in str(caught.value) and "instance_types.gcp" in str(caught.value), str(caught.value)
    assert instance_accelerators_gcp(gce.instances["ml"][1]) is None

    summary = sync(collector, store)
    err = summary.scopes[0].error or ""
    assert summary.status == "partial" and not summary.scopes[0].complete
    assert "a3-highgpu-8g" in err and "a3" in err and "n2-standard-8" not in err, err
    assert _live(store)["ml/1"].count == 8
