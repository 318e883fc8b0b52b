"""The fake pynvml's live mode, seen through the monitor: real processes "use" fake VRAM."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator

import psutil
import pytest

from swapd.core.gpu_sample import GpuSample
from swapd.gpu.nvml import GpuMonitor, open_monitor
from tests.fakes.fake_nvml import GIB, MIB, FakeGpu, FakeNvml
from tests.gpu.test_nvml import until

SLEEPER = [sys.executable, "-c", "import time; time.sleep(120)"]


@pytest.fixture
def spawn() -> Iterator[list[subprocess.Popen[bytes]]]:
    processes: list[subprocess.Popen[bytes]] = []
    yield processes
    for process in processes:
        process.kill()
        process.wait()


def start(processes: list[subprocess.Popen[bytes]], **env: str) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(SLEEPER, env={**os.environ, **env})
    processes.append(process)
    return process


def gpus(n: int) -> list[FakeGpu]:
    return [FakeGpu(total=24 * GIB, baseline=100 * MIB) for _ in range(n)]


async def used_when(monitor: GpuMonitor, gpu: int, used: int, **pids: int) -> GpuSample:
    async def poll() -> GpuSample | None:
        sample = await monitor.sample(pids)
        info = sample.gpu(gpu) if sample else None
        return sample if info and info.used == used else None

    return await until(poll)


async def test_live_process_memory_lands_on_its_visible_gpu_and_lingers_after_exit(
    spawn: list[subprocess.Popen[bytes]],
) -> None:
    nvml = FakeNvml(gpus(2), live=True, release_lag_s=0.5)
    monitor = open_monitor(nvml)
    child = start(spawn, FAKE_VRAM_MIB="300", CUDA_VISIBLE_DEVICES="1")

    sample = await used_when(monitor, 1, 400 * MIB, qwen=child.pid)
    assert sample.gpus[0].used == 100 * MIB
    assert sample.gpus[1].free == 24 * GIB - 400 * MIB
    assert sample.model_usage == {"qwen": {1: 300 * MIB}}

    child.kill()
    child.wait()
    exited = time.monotonic()
    sample = await monitor.sample({})
    assert sample is not None
    assert sample.gpus[1].used == 400 * MIB  # the driver has not let go yet
    await used_when(monitor, 1, 100 * MIB)
    assert time.monotonic() - exited >= 0.5
    await monitor.close()


async def test_live_memory_is_split_over_visible_gpus_and_waits_for_the_delay(
    spawn: list[subprocess.Popen[bytes]],
) -> None:
    nvml = FakeNvml(gpus(3), live=True)
    monitor = open_monitor(nvml)
    split = start(spawn, FAKE_VRAM_MIB="200", CUDA_VISIBLE_DEVICES="0,2")
    late = start(spawn, FAKE_VRAM_MIB="50", FAKE_VRAM_DELAY_S="0.3")
    await used_when(monitor, 2, 200 * MIB)
    sample = await used_when(monitor, 0, 250 * MIB)  # 100 of the split + 50 once `late` is due
    assert time.time() - psutil.Process(late.pid).create_time() >= 0.3
    assert sample.gpus[1].used == 100 * MIB
    assert sample.model_usage == {}  # no model pids asked about
    sample = await monitor.sample({"split": split.pid, "late": late.pid})
    assert sample is not None
    assert sample.model_usage == {"split": {0: 100 * MIB, 2: 100 * MIB}, "late": {0: 50 * MIB}}
    await monitor.close()


async def test_processes_without_the_variable_use_nothing(
    spawn: list[subprocess.Popen[bytes]],
) -> None:
    nvml = FakeNvml(gpus(1), live=True)
    monitor = open_monitor(nvml)
    plain = start(spawn)
    sample = await monitor.sample({"plain": plain.pid})
    await monitor.close()
    assert sample is not None
    assert sample.gpus[0].used == 100 * MIB
    assert sample.processes == ()
