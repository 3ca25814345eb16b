"""NVML collector: the GPUs physically in this host, by UUID and serial number (nvidia-ml-py).

Each physical GPU is one holding keyed by its UUID (stable across reboots and driver reloads). A GPU in MIG
mode is still one chip held; MIG only partitions it. The library is injectable so the collector can run
against a fake where no GPU is present; by default it is ``pynvml`` from nvidia-ml-py.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from typing import Any

from agent.collectors.base import Collector, Observation, ScopeResult, SiteRef, SourceConfig, register, resolve_alias
from policies.errors import PolicyError


class NvmlConfig(SourceConfig):
    site: str = ""
    host: str = ""


def _text(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


# NVML's answers that a GPU or driver has no such property (nvml.h: NVML_ERROR_NOT_SUPPORTED, and
# NVML_ERROR_FUNCTION_NOT_FOUND from a driver older than the call): no serial, no MIG. Any other error (GPU_IS_LOST,
# UNKNOWN ...) means the GPU could not be read, not that it lacks the property.
_UNSUPPORTED = (3, 13)


def _unsupported(exc: Exception) -> bool:
    return getattr(exc, "value", None) in _UNSUPPORTED


def _unread(i: int, uuid: str, what: str) -> str:
    """The error for a GPU NVML could not read all of: it stays held as last seen, and the host retires nothing."""
    return (f"GPU {i} ({uuid}): NVML cannot read {what}; it stays held as last seen and nothing on this host retires "
            "until it answers again")


# nvml.h, NVML_ERROR_NO_PERMISSION: nvmlDeviceGetMemoryInfo on a GPU in MIG mode answers the whole GPU's memory only
# to a privileged caller.
_NO_PERMISSION = 4


def _told_by_memory(name: str) -> bool:
    """Whether the catalog tells the chip ``name`` denotes by its memory size (a name two chips share, such as
    "A100": 40 or 80 GB). Tried at every memory size the catalog distinguishes chips by, and without one."""
    from agent.kb import catalog

    accs = catalog().accelerators()
    sizes = {a.memory_mib for acc in accs for a in acc.aliases if a.memory_mib is not None}
    sizes |= {round(acc.memory_gb * 1024) for acc in accs if acc.memory_gb is not None}
    chips = set()
    for mib in (None, *sorted(sizes)):
        try:
            chips.add(resolve_alias(name, memory_mib=mib)[0])
        except PolicyError:
            return False  # a name the catalog lacks: refused below whatever its memory
    return len(chips) > 1


# nvml.h return codes whose cause is the host's driver set-up, not one GPU: the code's name and what to do. The
# library's own words ("RM has detected an NVML/RM version mismatch.") say neither why nor how to fix it.
_HOST_FIXES: dict[int, tuple[str, str]] = {
    4: ("NVML_ERROR_NO_PERMISSION",
        "the agent may not open the GPU device files (/dev/nvidia*): run it as root or as a user in the group that "
        "owns them; in a container, give it the GPUs through the NVIDIA Container Toolkit"),
    9: ("NVML_ERROR_DRIVER_NOT_LOADED",
        "the NVIDIA kernel driver is not loaded on this host: load it (`sudo modprobe nvidia`; reinstall the driver "
        "if that fails) and check that `nvidia-smi` lists the GPUs"),
    12: ("NVML_ERROR_LIBRARY_NOT_FOUND",
         "libnvidia-ml.so.1, which comes with the NVIDIA driver, could not be loaded: install the driver on this "
         "host; in a container, run it with the NVIDIA Container Toolkit (runtime nvidia, or the GPU Operator) so the "
         "host's library is mounted in"),
    18: ("NVML_ERROR_LIB_RM_VERSION_MISMATCH",
         "the NVML library (user space) and the loaded NVIDIA kernel driver are different versions, usually after a "
         "driver upgrade without a reboot: reboot the host, or unload and reload the nvidia kernel modules; in a "
         "container, take libnvidia-ml from the host through the NVIDIA Container Toolkit instead of the image's "
         "own copy"),
}


def _explain(exc: Exception) -> str:
    """An NVML error with its nvml.h code and, for a host set-up fault, the cause and what to do about it."""
    code = getattr(exc, "value", None)
    if not isinstance(code, int):
        return f"{type(exc).__name__}: {exc}"
    name, fix = _HOST_FIXES.get(code, ("", ""))
    if not fix:
        return f"{exc} (NVML error code {code})"
    return f"{exc} ({name}, code {code}); {fix}"


_KEPT = "the GPUs held on this host stay held and nothing here retires until NVML answers"


@register("nvml")
class NvmlCollector(Collector):
    config_model = NvmlConfig
    config: NvmlConfig

    def __init__(self, config: SourceConfig, nvml: Any = None) -> None:
        super().__init__(config)
        self._nvml = nvml

    def _lib(self) -> Any:
        if self._nvml is None:
            import pynvml

            self._nvml = pynvml
        return self._nvml

    def collect(self) -> Iterator[ScopeResult]:
        host = self.config.host or socket.gethostname()
        res = ScopeResult(scope=f"host:{host}")
        if not self.config.site:
            res.error = "collectors.nvml.site: name the registered site this host is in"
            yield res
            return
        try:
            lib = self._lib()
        except ImportError as exc:
            res.error = (f"NVML: the Python package nvidia-ml-py (module pynvml) cannot be imported ({exc}): "
                         f"`pip install nvidia-ml-py` into the agent's environment; {_KEPT}")
            yield res
            return
        try:
            lib.nvmlInit()
        except Exception as exc:
            res.error = f"nvmlInit failed: {_explain(exc)}; {_KEPT}"
            yield res
            return
        try:
            site = SiteRef(provider="onprem", name=self.config.site)
            for i in range(int(lib.nvmlDeviceGetCount())):
                try:
                    h = lib.nvmlDeviceGetHandleByIndex(i)
                    name = _text(lib.nvmlDeviceGetName(h))
                    uuid = _text(lib.nvmlDeviceGetUUID(h))
                except Exception as exc:
                    # A GPU fallen off the bus (GPU is lost) or otherwise unreadable is still in the host: keep
                    # its holding (the scope is partial, nothing retires) and go on to the GPUs after it.
                    res.add_error(f"GPU {i}: NVML cannot read it ({exc}); it stays held and nothing on this host "
                                  "retires until it answers again")
                    continue
                try:
                    serial = _text(lib.nvmlDeviceGetSerial(h))
                except Exception as exc:
                    if not _unsupported(exc):
                        # Lost part-way through being read: "no serial" would rewrite the holding without the serial
                        # it has (and MIG mode as off). It stays held as last seen; nothing here retires.
                        res.add_error(_unread(i, uuid, f"its serial ({exc})"))
                        continue
                    serial = ""
                mem = None
                try:
                    mem = int(lib.nvmlDeviceGetMemoryInfo(h).total) // (1024 * 1024)
                except Exception as exc:
                    # NOT_SUPPORTED: no size to tell by (the name alone decides). Any other answer (GPU_IS_LOST,
                    # UNKNOWN, NO_PERMISSION: a MIG-mode GPU to an unprivileged caller) is a size NVML did not give:
                    # guessing without it, a name two chips share ("A100": 40 or 80 GB) was rewritten as the
                    # other chip. It matters only for such a name; the others are told by their name alone.
                    if not _unsupported(exc) and _told_by_memory(name):
                        why = (" (a GPU in MIG mode tells its memory size only to a privileged caller: run the "
                               "NVML collector as root on this host)"
                               if getattr(exc, "value", None) == _NO_PERMISSION else "")
                        res.add_error(_unread(i, uuid, f"its memory size ({exc}){why}, which tells which chip "
                                                       f"{name!r} is"))
                        continue
                try:
                    acc, _ = resolve_alias(name, memory_mib=mem)
                except PolicyError as exc:
                    res.add_error(f"GPU {i} ({uuid}): {exc}")
                    continue
                # MIG mode partitions the GPU but it is still one whole chip held: the slices are not counted.
                mig = False
                try:
                    mig = bool(lib.nvmlDeviceGetMigMode(h)[0])
                except Exception as exc:
                    if not _unsupported(exc):
                        res.add_error(_unread(i, uuid, f"its MIG mode ({exc})"))
                        continue
                    mig = False
                res.observations.append(
                    Observation(
                        external_id=uuid,
                        site=site,
                        accelerator=acc,
                        count=1.0,
                        serial=serial,
                        instance_type="mig" if mig else "",
                        owner=self.config.owner,
                        operator=self.config.operator,
                    )
                )
        except Exception as exc:
            res.add_error(f"NVML: {_explain(exc)}; {_KEPT}")
        finally:
            with contextlib.suppress(Exception):
                lib.nvmlShutdown()
        yield res
