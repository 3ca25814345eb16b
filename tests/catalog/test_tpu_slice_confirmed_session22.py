"""A TPU API slice name answers with its family's own confirmed flag (session 22).

The v3-N family (2 TensorCores per chip, a pod of 1,024 chips) comes from the Cloud TPU v3 docs only, not from
accelerators.md, like the ct3 machine types that carry ``confirmed: false``; ``veuctl chips instance gcp v3-8``
showed it confirmed. The families accelerators.md §3.2 lists (v4, v5p, v5litepod, v6e) stay confirmed.
"""

from __future__ import annotations

import pytest

from policies.catalog import Catalog, TpuSliceIn


def test_v3_slice_from_secondary_sources_is_unconfirmed_with_a_note(cat: Catalog) -> None:
    spec = cat.instance("gcp", "v3-8")
    assert (spec.accelerator.id, spec.count) == ("tpu-v3", 4)
    assert spec.confirmed is False
    assert "UNCONFIRMED" in spec.note and "counts TensorCores" in spec.note


@pytest.mark.parametrize("name", ["v4-8", "v5p-8", "v5litepod-8", "v6e-8"])
def test_slice_families_in_the_reference_stay_confirmed(cat: Catalog, name: str) -> None:
    spec = cat.instance("gcp", name)
    assert spec.confirmed is True
    assert "UNCONFIRMED" not in spec.note


def test_an_unconfirmed_slice_family_needs_a_note() -> None:
    with pytest.raises(ValueError, match="needs 'note'"):
        TpuSliceIn(accelerator="tpu-v3", counts="cores", cores_per_chip=2, confirmed=False)
