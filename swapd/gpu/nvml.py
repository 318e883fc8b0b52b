"""GPU monitoring through NVML (the nvidia-ml-py `pynvml` module), one sample at a time.

NVML calls block, and a wedged driver can block them for ever, so every call runs on one daemon
thread owned by the monitor and the event loop waits for it with a timeout. Without NVML (no
driver, no library, no GPU) the monitor is a NullMonitor and VRAM-aware placement is off.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future
from typing import Any, Protocol, TypeVar

import psutil

from swapd.core.gpu_sample import GpuInfo, GpuProcess, GpuSample

log = logging.getLogger("swapd.gpu")

T = TypeVar("T")
NOT_AVAILABLE = 2**64 - 1
"""NVML's "value not available" for an unsigned long long (pynvml turns it into None for the
process lists, but not everywhere, and not in every version)."""

# A v2 memory query failing with one of these means the driver will never support it.
_V2_NEVER_ERRORS = (
    "NVMLError_FunctionNotFound",
    "NVMLError_NotSupported",
    "NVMLError_ArgumentVersionMismatch",
)


class GpuMonitor(Protocol):
    @property
    def available(self) -> bool: ...

    @property
    def latest(self) -> GpuSample | None:
        """What the last sample() returned."""
        ...

    async def sample(self, model_pids: Mapping[str, int]) -> GpuSample | None: ...

    async def close(self) -> None: ...


class NullMonitor:
    """No GPU monitoring: placement falls back to the configured groups alone."""

    @property
    def available(self) -> bool:
        return False

    @property
    def latest(self) -> GpuSample | None:
        return None

    async def sample(self, model_pids: Mapping[str, int]) -> GpuSample | None:
        return None

    async def close(self) -> None:
        return None


class _Worker:
    """One daemon thread running submitted calls in order.

    Not a ThreadPoolExecutor: the interpreter joins those threads at exit, so a call stuck in the
    driver would keep swapd from exiting."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._queue: queue.SimpleQueue[tuple[Callable[[], Any], Future[Any]] | None] = (
            queue.SimpleQueue()
        )
        self._thread: threading.Thread | None = None

    def submit(self, fn: Callable[[], T]) -> Future[T]:
        future: Future[T] = Future()
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
            self._thread.start()
        self._queue.put((fn, future))
        return future

    def shutdown(self) -> None:
        """Let the thread end after the calls already submitted (without waiting for them)."""
        self._queue.put(None)

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            fn, future = item
            if not future.set_running_or_notify_cancel():
                continue
            try:
                result = fn()
            except BaseException as exc:
                future.set_exception(exc)
            else:
                future.set_result(result)


class NvmlMonitor:
    """Samples every GPU NVML sees; `nvml` is an initialised pynvml-like module."""

    def __init__(self, nvml: Any, *, gpu_count: int, timeout_s: float = 2.0) -> None:
        self._nvml = nvml
        self._gpu_count = gpu_count
        self._timeout_s = timeout_s
        self._worker = _Worker("swapd-nvml")
        self._latest: GpuSample | None = None
        self._in_progress: asyncio.Future[GpuSample | None] | None = None
        self._job: Future[GpuSample] | None = None
        self._closed = False
        # Kinds of sample failure already warned about since the last good sample.
        self._failures: set[str] = set()
        # Read and written on the worker thread only:
        self._memory_v1 = False
        self._thread_warned: set[str] = set()

    @property
    def available(self) -> bool:
        return self._gpu_count > 0 and not self._closed

    @property
    def latest(self) -> GpuSample | None:
        return self._latest

    async def sample(self, model_pids: Mapping[str, int]) -> GpuSample | None:
        if not self.available:
            return None
        if self._in_progress is not None:
            return await asyncio.shield(self._in_progress)
        in_progress: asyncio.Future[GpuSample | None] = asyncio.get_running_loop().create_future()
        self._in_progress = in_progress
        result: GpuSample | None = None
        try:
            result = await self._take(dict(model_pids))
            self._latest = result
        finally:
            self._in_progress = None
            in_progress.set_result(result)
        return result

    async def _take(self, model_pids: dict[str, int]) -> GpuSample | None:
        if self._job is not None and not self._job.done():
            return None  # an earlier call is still stuck in the driver (already warned)
        self._job = self._worker.submit(lambda: self._read(model_pids))
        try:
            sample = await asyncio.wait_for(asyncio.wrap_future(self._job), self._timeout_s)
        except TimeoutError:
            _warn_once(self._failures, "timeout", "GPU sample took over %.1f s", self._timeout_s)
            return None
        except Exception as exc:
            kind = type(exc).__name__
            _warn_once(self._failures, kind, "GPU sample failed: %s: %s", kind, exc)
            return None
        if self._failures:
            log.info("GPU sampling works again")
            self._failures.clear()
        return sample

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        # A sample merely in progress finishes in a moment; one that already timed out may not.
        stuck = self._job is not None and not self._job.done() and "timeout" in self._failures
        shutdown = self._worker.submit(self._nvml.nvmlShutdown)
        self._worker.shutdown()
        if stuck:
            log.warning("an NVML call is stuck: nvmlShutdown will run if it ever returns")
            return
        try:
            await asyncio.wait_for(asyncio.wrap_future(shutdown), self._timeout_s)
        except TimeoutError:
            log.warning("nvmlShutdown took over %.1f s: not waiting for it", self._timeout_s)
        except Exception as exc:
            log.warning("nvmlShutdown failed: %s", exc)

    # Everything below runs on the worker thread.

    def _read(self, model_pids: Mapping[str, int]) -> GpuSample:
        nvml = self._nvml
        taken_at = time.monotonic()
        gpus: list[GpuInfo] = []
        processes: list[GpuProcess] = []
        for index in range(self._gpu_count):
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            total, used, free = self._memory(handle)
            name = _text(nvml.nvmlDeviceGetName(handle))
            uuid = _text(nvml.nvmlDeviceGetUUID(handle))
            utilization = self._utilization(handle)
            gpus.append(
                GpuInfo(
                    index=index,
                    name=name,
                    uuid=uuid,
                    total=total,
                    used=used,
                    free=free,
                    utilization=utilization,
                )
            )
            processes.extend(
                GpuProcess(gpu=index, pid=int(p.pid), used=_known(p.usedGpuMemory))
                for p in self._processes(handle)
            )
        usage = _model_usage(processes, model_pids) if processes and model_pids else {}
        return GpuSample(
            gpus=tuple(gpus), processes=tuple(processes), model_usage=usage, taken_at=taken_at
        )

    def _memory(self, handle: Any) -> tuple[int, int, int]:
        """(total, used, free). v2 `used` leaves out what the driver reserves; v1 counts it."""
        nvml = self._nvml
        version = getattr(nvml, "nvmlMemory_v2", None)
        if not self._memory_v1 and version is not None:
            never = tuple(getattr(nvml, name) for name in _V2_NEVER_ERRORS if hasattr(nvml, name))
            try:
                info = nvml.nvmlDeviceGetMemoryInfo(handle, version=version)
                return int(info.total), int(info.used), int(info.free)
            except (*never, TypeError) as exc:  # TypeError: a pynvml without `version=`
                log.info(
                    "NVML memory info v2 unavailable (%s): using v1, which counts "
                    "driver-reserved memory as used",
                    exc,
                )
                self._memory_v1 = True
        info = nvml.nvmlDeviceGetMemoryInfo(handle)
        return int(info.total), int(info.used), int(info.free)

    def _utilization(self, handle: Any) -> int | None:
        try:
            return int(self._nvml.nvmlDeviceGetUtilizationRates(handle).gpu)
        except self._nvml.NVMLError:
            return None

    def _processes(self, handle: Any) -> Iterable[Any]:
        try:
            return list(self._nvml.nvmlDeviceGetComputeRunningProcesses(handle))
        except Exception as exc:  # NVMLError, or pynvml's NVMLLibraryMismatchError (old driver)
            _warn_once(self._thread_warned, "processes", "NVML cannot list GPU processes: %s", exc)
            return []


def _warn_once(seen: set[str], kind: str, message: str, *args: object) -> None:
    if kind not in seen:
        seen.add(kind)
        log.warning(message, *args)


def _model_usage(
    processes: Iterable[GpuProcess], model_pids: Mapping[str, int]
) -> dict[str, dict[int, int]]:
    owner: dict[int, str] = {}
    for model, root in model_pids.items():
        for pid in _process_tree(root):
            owner.setdefault(pid, model)
    usage: dict[str, dict[int, int]] = {}
    for process in processes:
        owning_model = owner.get(process.pid)
        if owning_model is None or process.used is None:
            continue
        per_gpu = usage.setdefault(owning_model, {})
        per_gpu[process.gpu] = per_gpu.get(process.gpu, 0) + process.used
    return usage


def _process_tree(root: int) -> list[int]:
    try:
        return [root, *(child.pid for child in psutil.Process(root).children(recursive=True))]
    except psutil.Error:
        return []


def _known(used: int | None) -> int | None:
    return None if used is None or used >= NOT_AVAILABLE else int(used)


def _text(value: bytes | str) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def open_monitor(nvml: Any | None = None, *, timeout_s: float = 2.0) -> GpuMonitor:
    """An NvmlMonitor when NVML initialises, else a NullMonitor (one info line says why)."""
    try:
        if nvml is None:
            import pynvml

            nvml = pynvml
        nvml.nvmlInit()
    except Exception as exc:  # no pynvml, no libnvidia-ml, no driver: all mean "no monitoring"
        log.info("no NVIDIA GPU monitoring (%s): VRAM-aware placement is off", exc)
        return NullMonitor()
    try:
        count = int(nvml.nvmlDeviceGetCount())
    except Exception as exc:
        log.info("no NVIDIA GPU monitoring (%s): VRAM-aware placement is off", exc)
        return NvmlMonitor(nvml, gpu_count=0, timeout_s=timeout_s)  # its close() shuts NVML down
    if count == 0:
        log.info("NVML sees no GPU: VRAM-aware placement is off")
    return NvmlMonitor(nvml, gpu_count=count, timeout_s=timeout_s)


def describe(sample: GpuSample) -> str:
    """One line per GPU, for logs: `GPU 0 NVIDIA H100: 12.3/79.6 GiB used, 45 %`."""
    lines = []
    for gpu in sample.gpus:
        load = "" if gpu.utilization is None else f", {gpu.utilization} %"
        lines.append(
            f"GPU {gpu.index} {gpu.name}: {gpu.used / 1024**3:.1f}/{gpu.total / 1024**3:.1f} GiB"
            f" used{load}"
        )
    return "\n".join(lines)
