"""NVML failures name their cause and what to do on the host (session 24D), raised as nvidia-ml-py raises them.

Before, ``nvmlInit`` failing gave only the library's words ("RM has detected an NVML/RM version mismatch.",
"Driver Not Loaded", "NVML Shared Library Not Found"), with nothing on why it happens or how to fix it.
"""

from __future__ import annotations

import builtins
from typing import Any

import pynvml
import pytest
from sqlmodel import select

from agent.inventory import sync
from agent.store import session_scope
from agent.store.tables.core import Holding
from tests.inventory.test_nvml_collector import FakeGpu, FakeNvml, _collector, dc  # noqa: F401 (fixture)


class RaisingNvml(FakeNvml):
    """nvmlInit raises a given nvidia-ml-py exception class (as the real library does when it cannot start)."""

    def __init__(self, exc: type[pynvml.NVMLError]) -> None:
        super().__init__([])
        self.exc = exc

    def nvmlInit(self) -> None:
        self.calls.append("init")
        raise self.exc()


def _error_after_init_fails(store: str, exc: type[pynvml.NVMLError]) -> str:
    """Hold one GPU, then run with nvmlInit failing: the GPU must stay held (nothing retires) whatever the cause."""
    assert sync(_collector(FakeNvml([FakeGpu("NVIDIA H100 80GB HBM3", "GPU-aaaa", "1")])), store).status == "ok"
    summary = sync(_collector(RaisingNvml(exc)), store)
    assert summary.status == "failed"
    with session_scope(store) as s:
        assert s.exec(select(Holding)).one().retired_at is None
    err = summary.scopes[0].error or ""
    assert "nvmlInit" in err, err
    return err


def test_a_driver_library_version_mismatch_says_to_reboot_or_reload_the_driver(dc: str) -> None:  # noqa: F811
    err = _error_after_init_fails(dc, pynvml.NVMLError_LibRmVersionMismatch)
    assert "version mismatch" in err.lower() and "NVML_ERROR_LIB_RM_VERSION_MISMATCH" in err, err
    assert "reboot" in err and "kernel" in err and "container" in err, err  # why, and what to do where


def test_a_driver_not_loaded_says_to_load_it(dc: str) -> None:  # noqa: F811
    err = _error_after_init_fails(dc, pynvml.NVMLError_DriverNotLoaded)
    assert "NVML_ERROR_DRIVER_NOT_LOADED" in err and "nvidia-smi" in err and "modprobe nvidia" in err, err


def test_a_missing_nvml_library_says_where_it_comes_from(dc: str) -> None:  # noqa: F811
    err = _error_after_init_fails(dc, pynvml.NVMLError_LibraryNotFound)
    assert "NVML_ERROR_LIBRARY_NOT_FOUND" in err and "libnvidia-ml.so.1" in err, err
    assert "NVIDIA Container Toolkit" in err, err


def test_no_permission_says_to_run_with_access_to_the_device_files(dc: str) -> None:  # noqa: F811
    err = _error_after_init_fails(dc, pynvml.NVMLError_NoPermission)
    assert "/dev/nvidia" in err, err


def test_an_nvml_error_without_a_known_fix_still_names_its_code(dc: str) -> None:  # noqa: F811
    err = _error_after_init_fails(dc, pynvml.NVMLError_Unknown)
    assert "Unknown Error" in err and "999" in err, err


def test_nvidia_ml_py_missing_says_which_package_to_install(dc: str, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    real_import = builtins.__import__

    def no_pynvml(name: str, *a: Any, **kw: Any) -> Any:
        if name == "pynvml":
            raise ModuleNotFoundError("No module named 'pynvml'", name="pynvml")
        return real_import(name, *a, **kw)

    monkeypatch.setattr(builtins, "__import__", no_pynvml)
    from agent.collectors.nvml import NvmlCollector, NvmlConfig

    summary = sync(NvmlCollector(NvmlConfig(site="Dublin DC1", host="gpu-host-1")), dc)
    err = (summary.scopes[0].error if summary.scopes else None) or ""
    assert "nvidia-ml-py" in err and "pip install" in err, (err, summary.as_dict())
