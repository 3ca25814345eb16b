"""Session 22j: a GPU whose memory size NVML will not tell is no longer silently "memory unknown" when its name
needs the size to tell the chip (a catalog name two chips share: A100 40 GB / 80 GB).

nvml.h, nvmlDeviceGetMemoryInfo: "In MIG mode, if device handle is provided, the API returns aggregate information,
only if the caller has appropriate privileges" (NVML_ERROR_NO_PERMISSION otherwise); it also answers GPU_IS_LOST and
UNKNOWN. Only NOT_SUPPORTED / FUNCTION_NOT_FOUND mean "this GPU has no such answer"."""

from __future__ import annotations

from typing import Any

import pynvml
import pytest
from sqlmodel import select

from agent.collectors.base import resolve_alias
from agent.collectors.nvml import NvmlCollector, NvmlConfig
from agent.inventory import sync
from agent.parties import add_site
from agent.store import session_scope
from agent.store.tables.core import Holding
from tests.inventory.test_nvml_collector import FakeGpu, FakeNvml

SHARED = "NVIDIA A100"  # a name the catalog gives two chips, told apart by memory size
NAMED = "NVIDIA A100-SXM4-80GB"  # a name that tells its chip whatever the memory


class _MemoryRefused(FakeNvml):
    """nvmlDeviceGetMemoryInfo answers ``code`` for every GPU; everything else answers as the plain fake."""

    code: int | None = None

    def nvmlDeviceGetMemoryInfo(self, handle: FakeGpu) -> Any:
        if self.code is not None:
            raise pynvml.NVMLError(self.code)
        return super().nvmlDeviceGetMemoryInfo(handle)


@pytest.fixture()
def dc(store: str) -> str:
    with session_scope(store) as s:
        add_site(s, "Dublin DC1", "IE")
    return store


def _cfg() -> NvmlConfig:
    return NvmlConfig(site="Dublin DC1", host="gpu-host-1", owner="Acme Cloud")


def _rows(url: str) -> dict[str, Holding]:
    with session_scope(url) as s:
        return {h.external_id: h for h in s.exec(select(Holding))}


def test_the_shared_name_needs_the_memory_size() -> None:
    # The premise: without the size the shared name is the 40 GB chip, with it the 80 GB one.
    assert resolve_alias(SHARED, memory_mib=81920)[0] != resolve_alias(SHARED)[0]
    assert resolve_alias(NAMED, memory_mib=81920)[0] == resolve_alias(NAMED)[0]


@pytest.mark.parametrize("code", [pynvml.NVML_ERROR_GPU_IS_LOST, pynvml.NVML_ERROR_UNKNOWN,
                                  pynvml.NVML_ERROR_NO_PERMISSION])
def test_a_memory_read_error_on_a_shared_name_keeps_the_chip_as_last_seen_and_is_named(dc: str, code: int) -> None:
    # The error was swallowed as "memory unknown": the 80 GB A100 was rewritten as the 40 GB one (a lower TPP:
    # an undercount) and the run was complete.
    gpus = [FakeGpu(SHARED, "GPU-aaaa", "1320000000001", mig=1), FakeGpu(NAMED, "GPU-bbbb", "1320000000002")]
    assert sync(NvmlCollector(_cfg(), nvml=FakeNvml(gpus)), dc).status == "ok"
    eighty = _rows(dc)["GPU-aaaa"].accelerator
    assert eighty == resolve_alias(SHARED, memory_mib=81920)[0]

    lib = _MemoryRefused(gpus)
    lib.code = code
    summary = sync(NvmlCollector(_cfg(), nvml=lib), dc)

    assert summary.status == "partial", summary.as_dict()
    err = summary.scopes[0].error or ""
    assert "GPU 0" in err and "GPU-aaaa" in err and "memory" in err and "GPU-bbbb" not in err
    assert "stays held as last seen" in err
    rows = _rows(dc)
    assert rows["GPU-aaaa"].accelerator == eighty and rows["GPU-aaaa"].retired_at is None
    assert rows["GPU-bbbb"].retired_at is None
    assert lib.calls[-1] == "shutdown"


def test_no_permission_says_what_to_do(dc: str) -> None:
    lib = _MemoryRefused([FakeGpu(SHARED, "GPU-aaaa", "1", mig=1)])
    lib.code = pynvml.NVML_ERROR_NO_PERMISSION
    err = sync(NvmlCollector(_cfg(), nvml=lib), dc).scopes[0].error or ""
    assert "MIG" in err and "root" in err


@pytest.mark.parametrize("code", [pynvml.NVML_ERROR_NOT_SUPPORTED, pynvml.NVML_ERROR_FUNCTION_NOT_FOUND])
def test_not_supported_is_still_memory_unknown(dc: str, code: int) -> None:
    lib = _MemoryRefused([FakeGpu(SHARED, "GPU-aaaa", "1")])
    lib.code = code
    summary = sync(NvmlCollector(_cfg(), nvml=lib), dc)
    assert summary.status == "ok", summary.as_dict()
    assert _rows(dc)["GPU-aaaa"].accelerator == resolve_alias(SHARED)[0]


@pytest.mark.parametrize("code", [pynvml.NVML_ERROR_NO_PERMISSION, pynvml.NVML_ERROR_UNKNOWN])
def test_a_mig_gpu_whose_name_tells_the_chip_is_counted_without_its_memory(dc: str, code: int) -> None:
    # An unprivileged agent on a MIG-mode GPU is refused the size (NO_PERMISSION): the GPU's own name tells the chip,
    # so the host is not partial for ever.
    lib = _MemoryRefused([FakeGpu(NAMED, "GPU-aaaa", "1", mig=1)])
    lib.code = code
    summary = sync(NvmlCollector(_cfg(), nvml=lib), dc)
    assert summary.status == "ok", summary.as_dict()
    row = _rows(dc)["GPU-aaaa"]
    assert row.accelerator == resolve_alias(NAMED)[0] and row.instance_type == "mig"
