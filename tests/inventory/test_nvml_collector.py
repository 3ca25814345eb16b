"""The NVML collector against a fake library exposing nvidia-ml-py's function names and signatures."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pynvml
import pytest
from sqlmodel import select

from agent.collectors.nvml import NvmlCollector, NvmlConfig
from agent.inventory import sync
from agent.kb import catalog
from agent.parties import add_site
from agent.store import session_scope
from agent.store.tables.core import Holding


@dataclass
class FakeGpu:
    name: str
    uuid: str
    serial: str | None
    mig: int = 0
    total_bytes: int = 80 * 1024**3


@dataclass
class FakeNvml:
    """Same names and call shapes as ``pynvml``; raises ``pynvml.NVMLError`` like the real library."""

    gpus: list[FakeGpu]
    init_error: int | None = None
    calls: list[str] = field(default_factory=list)

    def nvmlInit(self) -> None:
        self.calls.append("init")
        if self.init_error is not None:
            raise pynvml.NVMLError(self.init_error)

    def nvmlShutdown(self) -> None:
        self.calls.append("shutdown")

    def nvmlDeviceGetCount(self) -> int:
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> FakeGpu:
        return self.gpus[index]

    def nvmlDeviceGetName(self, handle: FakeGpu) -> str:
        return handle.name

    def nvmlDeviceGetUUID(self, handle: FakeGpu) -> str:
        return handle.uuid

    def nvmlDeviceGetSerial(self, handle: FakeGpu) -> str:
        if handle.serial is None:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
        return handle.serial

    def nvmlDeviceGetMigMode(self, handle: FakeGpu) -> list[int]:
        return [handle.mig, handle.mig]

    def nvmlDeviceGetMemoryInfo(self, handle: FakeGpu) -> Any:
        return type("Mem", (), {"total": handle.total_bytes, "free": 0, "used": 0})()


def test_fake_matches_the_real_library_surface() -> None:
    for name in (
        "nvmlInit",
        "nvmlShutdown",
        "nvmlDeviceGetCount",
        "nvmlDeviceGetHandleByIndex",
        "nvmlDeviceGetName",
        "nvmlDeviceGetUUID",
        "nvmlDeviceGetSerial",
        "nvmlDeviceGetMigMode",
        "nvmlDeviceGetMemoryInfo",
    ):
        assert callable(getattr(pynvml, name)), name


@pytest.fixture()
def dc(store: str) -> str:
    with session_scope(store) as s:
        add_site(s, "Dublin DC1", "IE")
    return store


def _collector(lib: FakeNvml) -> NvmlCollector:
    return NvmlCollector(
        NvmlConfig(site="Dublin DC1", host="gpu-host-1", owner="Acme Cloud", operator="Acme Ops"), nvml=lib
    )


def test_each_local_gpu_is_one_holding_with_its_serial_mig_counted_as_one_chip(dc: str) -> None:
    lib = FakeNvml(
        [
            FakeGpu("NVIDIA H100 80GB HBM3", "GPU-aaaa", "1650923000001"),
            FakeGpu("NVIDIA H100 80GB HBM3", "GPU-bbbb", "1650923000002", mig=1),
        ]
    )
    assert sync(_collector(lib), dc).status == "ok"
    with session_scope(dc) as s:
        rows = {h.external_id: h for h in s.exec(select(Holding))}
    h100 = catalog().resolve("NVIDIA H100 80GB HBM3").accelerator.id
    assert {(k, h.serial, h.accelerator, h.count) for k, h in rows.items()} == {
        ("GPU-aaaa", "1650923000001", h100, 1.0),
        ("GPU-bbbb", "1650923000002", h100, 1.0),
    }
    assert lib.calls == ["init", "shutdown"]


def test_a_gpu_pulled_from_the_host_is_retired(dc: str) -> None:
    lib = FakeNvml(
        [FakeGpu("NVIDIA H100 80GB HBM3", "GPU-aaaa", "1"), FakeGpu("NVIDIA H100 80GB HBM3", "GPU-bbbb", "2")]
    )
    sync(_collector(lib), dc)
    lib.gpus.pop()
    sync(_collector(lib), dc)
    with session_scope(dc) as s:
        rows = {h.external_id: h for h in s.exec(select(Holding))}
    assert rows["GPU-bbbb"].retired_at is not None and rows["GPU-aaaa"].retired_at is None


def test_driver_failure_records_error_and_keeps_holdings(dc: str) -> None:
    lib = FakeNvml([FakeGpu("NVIDIA H100 80GB HBM3", "GPU-aaaa", "1")])
    sync(_collector(lib), dc)
    broken = FakeNvml([], init_error=pynvml.NVML_ERROR_DRIVER_NOT_LOADED)
    summary = sync(_collector(broken), dc)
    assert summary.status == "failed" and "nvmlInit" in (summary.scopes[0].error or "")
    with session_scope(dc) as s:
        assert s.exec(select(Holding)).one().retired_at is None
