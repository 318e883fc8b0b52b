"""NvmlMonitor against the fake pynvml, real process trees, and the real pynvml where it loads."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import TypeVar

import psutil
import pytest

from swapd.gpu.nvml import NullMonitor, NvmlMonitor, describe, open_monitor
from tests.fakes.fake_nvml import GIB, MIB, FakeGpu, FakeNvml, NVMLError_GpuIsLost

T = TypeVar("T")

TREE = """
import subprocess, sys, time
grandchild = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
print(grandchild.pid, flush=True)
time.sleep(120)
"""


def _info_lines(caplog: pytest.LogCaptureFixture, level: int = logging.INFO) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "swapd.gpu" and r.levelno == level]


async def until(poll: Callable[[], Awaitable[T]], *, deadline_s: float = 10.0) -> T:
    """Poll until `poll` returns something truthy, within a bounded deadline."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if result := await poll():
            return result
        await asyncio.sleep(0.01)
    raise AssertionError("condition not met before the deadline")


@pytest.fixture
def process_tree() -> Iterator[tuple[int, int]]:
    """(child pid, grandchild pid) of a real two-level process tree."""
    child = subprocess.Popen([sys.executable, "-c", TREE], stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    grandchild = int(child.stdout.readline())
    try:
        yield child.pid, grandchild
    finally:
        with contextlib.suppress(psutil.NoSuchProcess):
            psutil.Process(grandchild).kill()
        child.kill()
        child.wait()
        child.stdout.close()


def two_gpus() -> list[FakeGpu]:
    return [
        FakeGpu(name="NVIDIA H100 80GB HBM3", total=80 * GIB, reserved=480 * MIB, utilization=7),
        FakeGpu(name="NVIDIA RTX A6000", total=48 * GIB, baseline=2 * GIB, utilization=None),
    ]


@pytest.mark.parametrize("missing", [True, False], ids=["library-not-found", "driver-not-loaded"])
async def test_open_monitor_without_nvml_is_null_and_never_shuts_down(
    caplog: pytest.LogCaptureFixture, missing: bool
) -> None:
    caplog.set_level(logging.INFO, logger="swapd.gpu")
    nvml = (
        FakeNvml(missing=True)
        if missing
        else FakeNvml(init_error=FakeNvml.NVMLError_DriverNotLoaded)
    )
    monitor = open_monitor(nvml)
    assert isinstance(monitor, NullMonitor)
    assert not monitor.available
    assert await monitor.sample({"m": 1}) is None
    assert monitor.latest is None
    await monitor.close()
    reason = "NVML Shared Library Not Found" if missing else "Driver Not Loaded"
    assert _info_lines(caplog) == [
        f"no NVIDIA GPU monitoring ({reason}): VRAM-aware placement is off"
    ]
    assert (nvml.init_calls, nvml.shutdown_calls) == (1, 0)


async def test_open_monitor_with_the_real_pynvml(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="swapd.gpu")
    try:
        ctypes.CDLL("libnvidia-ml.so.1")
    except OSError:
        monitor = open_monitor()
        assert isinstance(monitor, NullMonitor)
        assert _info_lines(caplog) == [
            "no NVIDIA GPU monitoring (NVML Shared Library Not Found): VRAM-aware placement is off"
        ]
        return
    monitor = open_monitor()  # a GPU machine: the real thing
    try:
        if monitor.available:
            sample = await monitor.sample({})
            assert sample is not None
            assert sample.gpus
            for gpu in sample.gpus:
                assert gpu.total > 0
                assert 0 <= gpu.used <= gpu.total
                assert gpu.uuid.startswith("GPU-")
    finally:
        await monitor.close()


async def test_no_gpu_means_unavailable_but_nvml_is_shut_down(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="swapd.gpu")
    nvml = FakeNvml(gpus=[])
    monitor = open_monitor(nvml)
    assert not monitor.available
    assert await monitor.sample({}) is None
    await monitor.close()
    await monitor.close()
    assert nvml.shutdown_calls == 1
    assert _info_lines(caplog) == ["NVML sees no GPU: VRAM-aware placement is off"]


@pytest.mark.parametrize("as_bytes", [False, True], ids=["str", "bytes"])
async def test_sample_enumerates_gpus_with_v2_memory(as_bytes: bool) -> None:
    nvml = FakeNvml(two_gpus(), names_as_bytes=as_bytes)
    monitor = open_monitor(nvml)
    assert isinstance(monitor, NvmlMonitor)
    assert monitor.available
    before = time.monotonic()
    sample = await monitor.sample({})
    await monitor.close()
    assert sample is not None
    assert monitor.latest is sample
    assert before <= sample.taken_at <= time.monotonic()
    h100, a6000 = sample.gpus
    assert (h100.index, h100.name, h100.uuid) == (0, "NVIDIA H100 80GB HBM3", nvml_uuid(0))
    assert (a6000.index, a6000.name, a6000.uuid) == (1, "NVIDIA RTX A6000", nvml_uuid(1))
    # v2: the driver's reservation is not "used", as measured on a real idle H100.
    assert (h100.total, h100.used, h100.free) == (80 * GIB, 0, 80 * GIB - 480 * MIB)
    assert (a6000.total, a6000.used, a6000.free) == (48 * GIB, 2 * GIB, 46 * GIB)
    assert (h100.utilization, a6000.utilization) == (7, None)
    assert sample.processes == ()
    assert sample.model_usage == {}
    assert sample.gpu(1) is a6000
    assert sample.gpu(2) is None
    assert nvml.shutdown_calls == 1


def nvml_uuid(index: int) -> str:
    return f"GPU-fa4e0000-0000-0000-0000-{index:012d}"


async def test_sample_falls_back_to_v1_memory_for_good(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="swapd.gpu")
    nvml = FakeNvml(two_gpus(), memory_v2=False)
    monitor = open_monitor(nvml)
    first = await monitor.sample({})
    second = await monitor.sample({})
    await monitor.close()
    assert first is not None
    assert second is not None
    assert first.gpus[0].used == second.gpus[0].used == 480 * MIB  # v1 counts the reservation
    assert first.gpus[0].free == 80 * GIB - 480 * MIB
    assert nvml.memory_v2_calls == 1
    assert sum("v2 unavailable" in line for line in _info_lines(caplog)) == 1


async def test_model_usage_follows_the_process_tree(process_tree: tuple[int, int]) -> None:
    child, grandchild = process_tree
    gone = _exited_pid()
    nvml = FakeNvml(two_gpus())
    nvml.set_process(grandchild, 1, 3 * GIB)
    nvml.set_process(child, 0, 100 * MIB)
    nvml.set_process(gone, 0, 1 * GIB)  # listed by the driver, owned by nobody we know
    monitor = open_monitor(nvml)
    sample = await monitor.sample({"qwen": child, "vanished": _exited_pid()})
    assert sample is not None
    assert sample.model_usage == {"qwen": {0: 100 * MIB, 1: 3 * GIB}}
    assert sample.gpus[1].used == 2 * GIB + 3 * GIB
    assert {(p.gpu, p.pid, p.used) for p in sample.processes} == {
        (1, grandchild, 3 * GIB),
        (0, child, 100 * MIB),
        (0, gone, 1 * GIB),
    }

    nvml.set_process(child, 0, None)  # the driver stops saying how much the child uses
    sample = await monitor.sample({"qwen": child})
    assert sample is not None
    assert sample.model_usage == {"qwen": {1: 3 * GIB}}
    nvml.set_process(grandchild, 1, None)
    sample = await monitor.sample({"qwen": child})
    assert sample is not None
    assert sample.model_usage == {}
    assert {p.used for p in sample.processes if p.pid in (child, grandchild)} == {None}
    await monitor.close()


def _exited_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


async def test_process_memory_unknown_to_the_driver_is_listed_but_not_counted(
    process_tree: tuple[int, int],
) -> None:
    child, grandchild = process_tree
    nvml = FakeNvml(two_gpus(), process_memory_known=False)
    nvml.set_process(grandchild, 0, 5 * GIB)
    monitor = open_monitor(nvml)
    sample = await monitor.sample({"qwen": child})
    await monitor.close()
    assert sample is not None
    assert sample.model_usage == {}
    assert [(p.gpu, p.pid, p.used) for p in sample.processes] == [(0, grandchild, None)]


async def test_concurrent_callers_share_one_sample() -> None:
    nvml = FakeNvml(two_gpus())
    monitor = open_monitor(nvml)
    nvml.hang()
    first = asyncio.create_task(monitor.sample({}))
    assert await asyncio.to_thread(nvml.hung.wait, 10)
    second = asyncio.create_task(monitor.sample({}))
    await asyncio.sleep(0)
    nvml.release()
    a, b = await asyncio.gather(first, second)
    assert a is not None
    assert a is b is monitor.latest
    assert nvml.memory_v2_calls == 2  # one sample: one memory query per GPU
    await monitor.close()


async def test_a_hung_nvml_call_times_out_once_and_the_monitor_recovers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="swapd.gpu")
    nvml = FakeNvml(two_gpus())
    monitor = open_monitor(nvml, timeout_s=0.2)
    assert await monitor.sample({}) is not None
    nvml.hang()
    started = time.monotonic()
    assert await monitor.sample({}) is None
    assert time.monotonic() - started >= 0.2
    assert monitor.latest is None
    # While the call is stuck, later samples answer at once and queue nothing behind it.
    started = time.monotonic()
    assert await monitor.sample({}) is None
    assert time.monotonic() - started < 0.2
    assert _info_lines(caplog, logging.WARNING) == ["GPU sample took over 0.2 s"]

    nvml.release()
    sample = await until(lambda: monitor.sample({}))
    assert monitor.latest is sample
    assert _info_lines(caplog)[-1] == "GPU sampling works again"
    await monitor.close()
    assert nvml.shutdown_calls == 1


async def test_close_does_not_wait_for_a_stuck_call() -> None:
    nvml = FakeNvml(two_gpus())
    monitor = open_monitor(nvml, timeout_s=0.1)
    nvml.hang()
    assert await monitor.sample({}) is None
    await asyncio.wait_for(monitor.close(), 1.0)
    assert not monitor.available
    assert await monitor.sample({}) is None
    assert nvml.shutdown_calls == 0
    nvml.release()  # the stuck call returns, then the queued nvmlShutdown runs, exactly once

    async def shut_down() -> bool:
        return nvml.shutdown_calls == 1

    await until(shut_down)
    await monitor.close()
    assert nvml.shutdown_calls == 1


async def test_nvml_errors_give_none_and_one_warning_per_kind(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="swapd.gpu")
    nvml = FakeNvml(two_gpus())
    monitor = open_monitor(nvml)
    nvml.device_error = NVMLError_GpuIsLost()
    assert await monitor.sample({}) is None
    assert await monitor.sample({}) is None
    assert monitor.latest is None
    assert _info_lines(caplog, logging.WARNING) == [
        "GPU sample failed: NVMLError_GpuIsLost: GPU is lost"
    ]
    nvml.device_error = None
    assert await monitor.sample({}) is not None
    nvml.device_error = NVMLError_GpuIsLost()
    assert await monitor.sample({}) is None  # a new episode is worth a new warning
    assert len(_info_lines(caplog, logging.WARNING)) == 2
    await monitor.close()


async def test_describe_gives_one_line_per_gpu() -> None:
    monitor = open_monitor(FakeNvml(two_gpus()))
    sample = await monitor.sample({})
    await monitor.close()
    assert sample is not None
    assert describe(sample) == (
        "GPU 0 NVIDIA H100 80GB HBM3: 0.0/80.0 GiB used, 7 %\n"
        "GPU 1 NVIDIA RTX A6000: 2.0/48.0 GiB used"
    )
