"""Session 22g QA of the NVML collector: a GPU lost part-way through being read keeps what the store knew of it."""

from __future__ import annotations

import pynvml
import pytest
from sqlmodel import select

from agent.collectors.nvml import NvmlCollector, NvmlConfig
from agent.inventory import sync
from agent.parties import add_site
from agent.store import session_scope
from agent.store.tables.core import Holding
from tests.inventory.test_nvml_collector import FakeGpu, FakeNvml

A100 = "NVIDIA A100-SXM4-80GB"


class _LostMidRead(FakeNvml):
    """The GPU ``lost`` answers its handle, name and UUID, then falls off the bus (GPU_IS_LOST) for the rest."""

    lost: str = ""
    call: str = "nvmlDeviceGetSerial"

    def _maybe_lost(self, handle: FakeGpu, call: str) -> None:
        if handle.uuid == self.lost and call == self.call:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_GPU_IS_LOST)

    def nvmlDeviceGetSerial(self, handle: FakeGpu) -> str:
        self._maybe_lost(handle, "nvmlDeviceGetSerial")
        return super().nvmlDeviceGetSerial(handle)

    def nvmlDeviceGetMigMode(self, handle: FakeGpu) -> list[int]:
        self._maybe_lost(handle, "nvmlDeviceGetMigMode")
        return super().nvmlDeviceGetMigMode(handle)


@pytest.fixture()
def dc(store: str) -> str:
    with session_scope(store) as s:
        add_site(s, "Dublin DC1", "IE")
    return store


def _rows(url: str) -> dict[str, Holding]:
    with session_scope(url) as s:
        return {h.external_id: h for h in s.exec(select(Holding))}


@pytest.mark.parametrize("call", ["nvmlDeviceGetSerial", "nvmlDeviceGetMigMode"])
def test_a_gpu_lost_after_its_uuid_was_read_keeps_its_serial_and_mig_mode_and_is_named(dc: str, call: str) -> None:
    # Any error reading the serial was taken as "this GPU has no serial": the holding was rewritten with serial ""
    # (the audit record of which board it is, gone) and the run was complete. Likewise MIG mode read as "off".
    gpus = [FakeGpu(A100, "GPU-aaaa", "1320000000001", mig=1), FakeGpu(A100, "GPU-bbbb", "1320000000002", mig=1)]
    cfg = NvmlConfig(site="Dublin DC1", host="gpu-host-1", owner="Acme Cloud")
    assert sync(NvmlCollector(cfg, nvml=FakeNvml(gpus)), dc).status == "ok"

    lib = _LostMidRead(gpus)
    lib.lost, lib.call = "GPU-aaaa", call
    summary = sync(NvmlCollector(cfg, nvml=lib), dc)

    assert summary.status == "partial", summary.as_dict()
    err = summary.scopes[0].error or ""
    assert "GPU 0" in err and "GPU-aaaa" in err and "lost" in err.lower()
    rows = _rows(dc)
    assert rows["GPU-aaaa"].serial == "1320000000001" and rows["GPU-aaaa"].instance_type == "mig"
    assert rows["GPU-aaaa"].retired_at is None
    assert rows["GPU-bbbb"].retired_at is None
    assert lib.calls[-1] == "shutdown"


def test_a_gpu_without_serial_or_mig_support_is_still_counted_without_them(dc: str) -> None:
    # NOT_SUPPORTED is an answer (a board without a serial, a GPU without MIG), not an error.
    summary = sync(NvmlCollector(NvmlConfig(site="Dublin DC1", host="h"),
                                 nvml=FakeNvml([FakeGpu("NVIDIA L4", "GPU-l4", None)])), dc)
    assert summary.status == "ok", summary.as_dict()
    assert _rows(dc)["GPU-l4"].serial == ""


class _OldDriver(FakeNvml):
    """A driver older than MIG: pynvml raises FUNCTION_NOT_FOUND for the call it lacks."""

    def nvmlDeviceGetMigMode(self, handle: FakeGpu) -> list[int]:
        raise pynvml.NVMLError(pynvml.NVML_ERROR_FUNCTION_NOT_FOUND)


def test_a_driver_without_mig_support_still_counts_every_gpu(dc: str) -> None:
    lib = _OldDriver([FakeGpu("NVIDIA Tesla V100-SXM2-32GB", "GPU-v1", "1", total_bytes=32 * 1024**3)])
    summary = sync(NvmlCollector(NvmlConfig(site="Dublin DC1", host="h"), nvml=lib), dc)
    assert summary.status == "ok", summary.as_dict()
    assert _rows(dc)["GPU-v1"].instance_type == ""
