"""A fake `pynvml` module: the part of nvidia-ml-py that swapd.gpu.nvml uses, with fake GPUs.

    nvml = FakeNvml(gpus=[FakeGpu(total=24 * GIB), FakeGpu(total=24 * GIB)])
    monitor = open_monitor(nvml)

Memory gets onto a fake GPU in two ways:

* explicitly: `set_process(pid, gpu, used_bytes)` / `remove_process(pid)`;
* live mode (`live=True`): every query scans the real descendants of the test process, and one
  whose environment has `FAKE_VRAM_MIB=<n>` uses n MiB, split evenly over the GPUs in its
  `CUDA_VISIBLE_DEVICES` (GPU 0 when unset), from `FAKE_VRAM_DELAY_S` seconds after it started
  (default 0). When it exits, its memory stays listed for `release_lag_s` more seconds, as
  with a driver that frees memory late.

A GPU's `used` is its baseline plus its processes (plus `reserved` in the v1 memory query, as
with real drivers); `free` is what is left. Thread-safe: the monitor calls it from a thread.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import psutil

GIB = 1024**3
MIB = 1024**2
UINT_MAX = 0xFFFFFFFF


class NVMLError(Exception):
    message = "Unknown Error"

    def __str__(self) -> str:
        return self.message


class NVMLError_Uninitialized(NVMLError):
    message = "Uninitialized"


class NVMLError_InvalidArgument(NVMLError):
    message = "Invalid Argument"


class NVMLError_NotSupported(NVMLError):
    message = "Not Supported"


class NVMLError_LibraryNotFound(NVMLError):
    message = "NVML Shared Library Not Found"


class NVMLError_DriverNotLoaded(NVMLError):
    message = "Driver Not Loaded"


class NVMLError_FunctionNotFound(NVMLError):
    message = "Function Not Found"


class NVMLError_GpuIsLost(NVMLError):
    message = "GPU is lost"


@dataclass
class FakeGpu:
    name: str = "NVIDIA H100 80GB HBM3"
    total: int = 80 * GIB
    baseline: int = 0
    """Memory used by something swapd does not know about."""
    reserved: int = 0
    """What the driver keeps for itself: v2 reports it apart, v1 counts it as used."""
    utilization: int | None = 0
    """None: the query is not supported."""


@dataclass(frozen=True)
class _Handle:
    index: int


class FakeNvml:
    NVMLError = NVMLError
    NVMLError_Uninitialized = NVMLError_Uninitialized
    NVMLError_InvalidArgument = NVMLError_InvalidArgument
    NVMLError_NotSupported = NVMLError_NotSupported
    NVMLError_LibraryNotFound = NVMLError_LibraryNotFound
    NVMLError_DriverNotLoaded = NVMLError_DriverNotLoaded
    NVMLError_FunctionNotFound = NVMLError_FunctionNotFound
    NVMLError_GpuIsLost = NVMLError_GpuIsLost
    nvmlMemory_v2 = 0x02000028

    def __init__(
        self,
        gpus: list[FakeGpu] | None = None,
        *,
        missing: bool = False,
        init_error: type[NVMLError] | None = None,
        memory_v2: bool = True,
        process_memory_known: bool = True,
        names_as_bytes: bool = False,
        live: bool = False,
        release_lag_s: float = 0.0,
    ) -> None:
        self.gpus = [FakeGpu()] if gpus is None else gpus
        self.init_error = NVMLError_LibraryNotFound if missing else init_error
        self.memory_v2 = memory_v2
        self.process_memory_known = process_memory_known
        self.names_as_bytes = names_as_bytes
        self.live = live
        self.release_lag_s = release_lag_s
        self.init_calls = 0
        self.shutdown_calls = 0
        self.memory_v2_calls = 0
        self.device_error: NVMLError | None = None
        """Raised by every device query while set (e.g. NVMLError_GpuIsLost())."""
        self.hung = threading.Event()
        """Set while a query is blocked by hang()."""
        self._lock = threading.Lock()
        self._initialized = False
        self._gate: threading.Event | None = None
        self._explicit: dict[int, tuple[int, int | None]] = {}  # pid -> (gpu, bytes)
        self._live: dict[int, tuple[dict[int, int], float | None]] = {}  # pid -> (shares, gone at)

    # Test controls

    def set_process(self, pid: int, gpu: int, used: int | None) -> None:
        """Put `used` bytes (None: the driver does not say) on `gpu` for `pid`."""
        with self._lock:
            self._explicit[pid] = (gpu, used)

    def remove_process(self, pid: int) -> None:
        with self._lock:
            self._explicit.pop(pid, None)

    def hang(self) -> None:
        """Make every device query block until release()."""
        with self._lock:
            self._gate = threading.Event()

    def release(self) -> None:
        with self._lock:
            gate, self._gate = self._gate, None
        if gate is not None:
            gate.set()
        self.hung.clear()

    # The pynvml surface

    def nvmlInit(self) -> None:
        with self._lock:
            self.init_calls += 1
            if self.init_error is not None:
                raise self.init_error()
            self._initialized = True

    def nvmlShutdown(self) -> None:
        with self._lock:
            self.shutdown_calls += 1
            if not self._initialized:
                raise NVMLError_Uninitialized()
            self._initialized = False

    def nvmlDeviceGetCount(self) -> int:
        self._enter()
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> _Handle:
        self._enter()
        if not 0 <= index < len(self.gpus):
            raise NVMLError_InvalidArgument()
        return _Handle(index)

    def nvmlDeviceGetName(self, handle: _Handle) -> str | bytes:
        name = self._gpu(handle).name
        return name.encode() if self.names_as_bytes else name

    def nvmlDeviceGetUUID(self, handle: _Handle) -> str | bytes:
        self._gpu(handle)
        uuid = f"GPU-fa4e0000-0000-0000-0000-{handle.index:012d}"
        return uuid.encode() if self.names_as_bytes else uuid

    def nvmlDeviceGetMemoryInfo(self, handle: _Handle, version: int | None = None) -> Any:
        gpu = self._gpu(handle)
        used = gpu.baseline + sum(b or 0 for _, b in self._processes_on(handle.index))
        if not version:
            used += gpu.reserved
            return SimpleNamespace(total=gpu.total, free=gpu.total - used, used=used)
        with self._lock:
            self.memory_v2_calls += 1
        if not self.memory_v2:
            raise NVMLError_FunctionNotFound()
        free = gpu.total - gpu.reserved - used
        return SimpleNamespace(
            version=version, total=gpu.total, reserved=gpu.reserved, free=free, used=used
        )

    def nvmlDeviceGetUtilizationRates(self, handle: _Handle) -> Any:
        gpu = self._gpu(handle)
        if gpu.utilization is None:
            raise NVMLError_NotSupported()
        return SimpleNamespace(gpu=gpu.utilization, memory=0)

    def nvmlDeviceGetComputeRunningProcesses(self, handle: _Handle) -> list[Any]:
        self._gpu(handle)
        return [
            SimpleNamespace(
                pid=pid,
                # pynvml turns NVML's "not available" (ULL max) into None.
                usedGpuMemory=used if self.process_memory_known else None,
                gpuInstanceId=UINT_MAX,
                computeInstanceId=UINT_MAX,
            )
            for pid, used in self._processes_on(handle.index)
        ]

    # Internals

    def _enter(self) -> None:
        with self._lock:
            gate, error, initialized = self._gate, self.device_error, self._initialized
        if gate is not None:
            self.hung.set()
            gate.wait()
        if not initialized:
            raise NVMLError_Uninitialized()
        if error is not None:
            raise error

    def _gpu(self, handle: _Handle) -> FakeGpu:
        self._enter()
        if not isinstance(handle, _Handle) or not 0 <= handle.index < len(self.gpus):
            raise NVMLError_InvalidArgument()
        return self.gpus[handle.index]

    def _processes_on(self, index: int) -> list[tuple[int, int | None]]:
        if self.live:
            self._scan_live()
        with self._lock:
            found = [(pid, used) for pid, (gpu, used) in self._explicit.items() if gpu == index]
            found += [
                (pid, shares[index]) for pid, (shares, _) in self._live.items() if index in shares
            ]
        return found

    def _scan_live(self) -> None:
        seen: dict[int, dict[int, int]] = {}
        for process in psutil.Process(os.getpid()).children(recursive=True):
            try:
                env = process.environ()
                if "FAKE_VRAM_MIB" not in env or process.status() == psutil.STATUS_ZOMBIE:
                    continue
                age = time.time() - process.create_time()
            except psutil.Error:
                continue
            if age < float(env.get("FAKE_VRAM_DELAY_S", "0")):
                continue
            visible = env.get("CUDA_VISIBLE_DEVICES", "").split(",")
            gpus = [int(i) for i in visible if i.strip().isdigit()] or [0]
            share = int(float(env["FAKE_VRAM_MIB"]) * MIB) // len(gpus)
            seen[process.pid] = dict.fromkeys(gpus, share)
        now = time.monotonic()
        with self._lock:
            for pid, (shares, gone_at) in list(self._live.items()):
                if pid in seen:
                    continue
                gone_at = now if gone_at is None else gone_at
                if now - gone_at >= self.release_lag_s:
                    del self._live[pid]
                else:
                    self._live[pid] = (shares, gone_at)
            for pid, shares in seen.items():
                self._live[pid] = (shares, None)
