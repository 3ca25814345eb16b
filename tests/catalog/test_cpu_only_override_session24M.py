"""A ``count: 0`` (CPU-only) row may not replace a row that gives the type accelerators (session 24M, review R3).

Operator catalog files override the built-in catalog by key. A CPU-only row (``count: 0``, no accelerator) written
for ``p5.48xlarge`` (a typo for ``m5.48xlarge``) silently replaced the 8 x H100 row: AWS and GCP VMs of that type
were neither counted nor reported, and a complete region listing retired their chips. Such a row is refused at
load, naming both files and the key; a row that gives a CPU-only type accelerators is still accepted (over-counting
is the safe direction).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from agent import kb
from policies.catalog import CatalogDataError

BUILTIN_INSTANCE_TYPES = str(kb.DATA_DIR / "instance_types.yaml")


def _file(tmp_path: Path, name: str, text: str) -> Path:
    f = tmp_path / name
    f.write_text(text)
    return f


def test_a_cpu_only_row_over_a_built_in_gpu_type_is_refused_naming_both_files_and_the_type(tmp_path: Path) -> None:
    op = _file(tmp_path, "op.yaml", 'schema: veu-catalog/v1\ninstance_types:\n  aws:\n'
                                    '    p5.48xlarge: {count: 0, source: "typo: meant m5.48xlarge"}\n')
    with pytest.raises(CatalogDataError) as err:
        kb.load_catalog((op,))
    msg = str(err.value)
    assert str(op) in msg and BUILTIN_INSTANCE_TYPES in msg, msg
    assert "instance_types.aws.p5.48xlarge" in msg and "count: 0" in msg, msg
    assert "h100" in msg.lower(), msg  # what the row would have replaced


def test_the_refusal_does_not_depend_on_how_the_type_is_spelt(tmp_path: Path) -> None:
    op = _file(tmp_path, "op.yaml", 'instance_types: {gcp: {A3-HighGPU-8g: {count: 0, source: "x"}}}\n')
    with pytest.raises(CatalogDataError) as err:
        kb.load_catalog((op,))
    assert "a3-highgpu-8g" in str(err.value).lower() and str(op) in str(err.value), str(err.value)


def test_a_cpu_only_row_over_an_earlier_operator_files_gpu_row_is_refused(tmp_path: Path) -> None:
    first = _file(tmp_path, "gpus.yaml", 'instance_types: {aws: {p9.48xlarge: {accelerator: h100-sxm, count: 8, '
                                         'source: "vendor sheet"}}}\n')
    second = _file(tmp_path, "cpus.yaml", 'instance_types: {aws: {p9.48xlarge: {count: 0, source: "x"}}}\n')
    with pytest.raises(CatalogDataError) as err:
        kb.load_catalog((first, second))
    msg = str(err.value)
    assert str(first) in msg and str(second) in msg and "p9.48xlarge" in msg, msg


def test_a_gpu_row_may_still_replace_a_cpu_only_row_and_new_cpu_only_types_still_load(tmp_path: Path) -> None:
    first = _file(tmp_path, "cpus.yaml", 'instance_types: {aws: {m7i.large: {count: 0, source: "product page"}, '
                                         'x9.large: {count: 0, source: "product page"}}}\n')
    second = _file(tmp_path, "gpus.yaml", 'instance_types: {aws: {x9.large: {accelerator: h100-sxm, count: 1, '
                                          'source: "it has one after all"}}}\n')
    c = kb.load_catalog((first, second))
    assert c.lacks_accelerators("aws", "m7i.large")
    assert c.instance("aws", "x9.large").count == 1


def test_a_cpu_only_row_repeating_a_cpu_only_row_loads(tmp_path: Path) -> None:
    first = _file(tmp_path, "a.yaml", 'instance_types: {aws: {m7i.large: {count: 0, source: "a"}}}\n')
    second = _file(tmp_path, "b.yaml", 'instance_types: {aws: {m7i.large: {count: 0, source: "b"}}}\n')
    assert kb.load_catalog((first, second)).lacks_accelerators("aws", "m7i.large")
