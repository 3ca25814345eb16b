"""A catalog row may state that an instance type has no accelerators (count 0, no accelerator, a source).

Before, every row needed an accelerator and a count above 0, so a CPU-only type (m7i.large, n2-standard-8) could
not be catalogued at all: an operator whose IAM policy lacks ec2:DescribeInstanceTypes had no way to say "this
type holds no chips" and every region with such VMs failed.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from agent import kb
from policies.catalog import Catalog, CatalogDataError, NoAccelerators
from policies.errors import UnknownInstanceType

CPU_ROWS = """
instance_types:
  aws:
    m7i.large: {count: 0, source: "AWS EC2 m7i product page (no GPUs)"}
  gcp:
    n2-standard-8: {count: 0, source: "GCE general-purpose machine types (no GPUs)"}
"""


def _with(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str) -> Catalog:
    f = tmp_path / "cpu.yaml"
    f.write_text(text)
    monkeypatch.setenv("VEU_CATALOG_FILES", str(f))
    return kb.catalog()


def test_a_cpu_only_instance_type_can_be_catalogued_as_having_no_accelerators(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    c = _with(tmp_path, monkeypatch, CPU_ROWS)
    assert c.lacks_accelerators("aws", "m7i.large") and c.lacks_accelerators("gcp", "N2-Standard-8")
    assert not c.lacks_accelerators("aws", "p5.48xlarge")  # a GPU type is never "no accelerators"
    assert not c.lacks_accelerators("aws", "m5.large")  # not catalogued: unknown, not CPU-only
    with pytest.raises(NoAccelerators) as err:
        c.instance("aws", "m7i.large")
    # Still an UnknownInstanceType (callers that ask for chips get none) and the message says why, with the source.
    assert isinstance(err.value, UnknownInstanceType)
    assert "no accelerators" in str(err.value) and "m7i product page" in str(err.value)
    # The listing of instance types with chips leaves the CPU-only rows out instead of failing on them.
    listed = {(s.provider, s.instance_type) for s in c.instance_types()}
    assert ("aws", "m7i.large") not in listed and ("aws", "p5.48xlarge") in listed


def test_a_row_with_no_accelerators_must_not_name_one(tmp_path: Path) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text("instance_types: {aws: {m7i.large: {accelerator: h100-sxm, count: 0, source: x}}}\n")
    with pytest.raises(CatalogDataError) as err:
        kb.load_catalog((f,))
    msg = str(err.value)
    assert str(f) in msg and "m7i.large" in msg and "accelerator" in msg, msg


def test_a_row_without_an_accelerator_must_have_count_zero(tmp_path: Path) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text("instance_types: {aws: {m7i.large: {count: 2, source: x}}}\n")
    with pytest.raises(CatalogDataError) as err:
        kb.load_catalog((f,))
    assert "m7i.large" in str(err.value) and "accelerator" in str(err.value), str(err.value)


def test_a_row_claiming_no_accelerators_needs_a_source(tmp_path: Path) -> None:
    """Saying a type holds no chips takes its VMs out of every count: the claim must say where it comes from."""
    f = tmp_path / "bad.yaml"
    f.write_text("instance_types: {aws: {m7i.large: {count: 0}}}\n")
    with pytest.raises(CatalogDataError) as err:
        kb.load_catalog((f,))
    assert "m7i.large" in str(err.value) and "source" in str(err.value), str(err.value)


def test_a_gpu_row_still_needs_a_positive_count(tmp_path: Path) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text("instance_types: {aws: {p9.48xlarge: {accelerator: h100-sxm, count: 0, source: x}}}\n")
    with pytest.raises(CatalogDataError):
        kb.load_catalog((f,))


def test_the_built_in_catalog_still_loads_and_lists_only_types_with_chips(cat: Catalog) -> None:
    specs = cat.instance_types()
    assert specs and all(s.count > 0 for s in specs)
