"""In-process swapd for GPU tests: serve() with an injected (fake) NVML, and small helpers."""

from __future__ import annotations

import asyncio
import json
import re
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp

from swapd.app import serve
from swapd.config.load import load_config
from swapd.gpu.nvml import open_monitor
from tests.fakes.fake_nvml import FakeNvml

FAKE = Path(__file__).resolve().parents[1] / "fakes" / "fake_upstream.py"


class WatchedNvml(FakeNvml):
    """Remembers the most memory each GPU ever had in use: an over-commit shows up here."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.peak: dict[int, int] = {}

    def nvmlDeviceGetMemoryInfo(self, handle: Any, version: int | None = None) -> Any:
        info = super().nvmlDeviceGetMemoryInfo(handle, version)
        self.peak[handle.index] = max(self.peak.get(handle.index, 0), info.used)
        return info


def model(name: str, mib: int, extra: str = "") -> str:
    return (
        f"  {name}:\n"
        f"    cmd: {sys.executable} {FAKE} --port ${{PORT}} --model {name}\n"
        f"    env: [FAKE_VRAM_MIB={mib}]\n"
        f"{extra}"
    )


def write_config(tmp: Path, models: str, **top: object) -> Path:
    settings = {
        "healthCheckTimeout": 20,
        "gpuPollInterval": 0.1,
        "vramReleaseTimeout": 10,
        "vramStateFile": str(tmp / "vram.json"),
        **top,
    }
    lines = [f"{k}: {json.dumps(v)}" for k, v in settings.items()]
    # Every model may run beside every other: only VRAM decides who goes.
    names = re.findall(r"^  (\S+):$", models, flags=re.MULTILINE)
    lines.append(
        "groups:\n  all:\n    swap: false\n    exclusive: false\n    members: " + json.dumps(names)
    )
    path = tmp / "swapd.yaml"
    path.write_text("\n".join(lines) + "\nmodels:\n" + models)
    return path


Request = Callable[..., Awaitable[tuple[int, Any]]]


@asynccontextmanager
async def running_swapd(config_path: Path, nvml: FakeNvml) -> AsyncIterator[tuple[str, Request]]:
    stop = asyncio.Event()
    listening: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    config = load_config(config_path)
    task = asyncio.create_task(
        serve(
            config,
            "127.0.0.1",
            0,
            stop=stop,
            on_listening=lambda _h, port: listening.set_result(port),
            monitor=open_monitor(nvml),
        ),
        name="swapd-under-test",
    )
    done, _ = await asyncio.wait({task, listening}, timeout=20, return_when="FIRST_COMPLETED")
    if task in done:
        task.result()  # raises what serve raised
    base = f"http://127.0.0.1:{listening.result()}"
    async with aiohttp.ClientSession() as http:

        async def call(method: str, path: str, body: object = None) -> tuple[int, Any]:
            async with http.request(method, base + path, json=body) as resp:
                return resp.status, await resp.json()

        try:
            yield base, call
        finally:
            stop.set()
            await asyncio.wait_for(task, 30)


def chat(name: str) -> dict[str, object]:
    return {"model": name, "messages": [{"role": "user", "content": "hi"}]}


async def until(predicate: Callable[[], Awaitable[bool]], limit: float = 10.0) -> None:
    """Poll swapd's HTTP view until it shows what the GPU monitor's next sample brings: the
    sample arrives from outside the test, so there is no event to wait on. Bounded."""
    async with asyncio.timeout(limit):
        while not await predicate():  # noqa: ASYNC110
            await asyncio.sleep(0.02)
