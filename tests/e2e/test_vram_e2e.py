"""VRAM-aware placement with real llama-server children, seen through a fake NVML.

The GPU is fake (these machines have none; scripts/gpu_smoke.py does the same on a real one),
everything else is real: the llama-server processes, the GGUF file the estimate is read from,
the CUDA_VISIBLE_DEVICES swapd hands them (the fake GPU charges each child FAKE_VRAM_MIB on the
GPUs named there) and the OpenAI answers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.e2e.conftest import llama_server_cmd
from tests.fakes.fake_nvml import GIB, FakeGpu
from tests.gpu.harness import WatchedNvml, chat, running_swapd, until, write_config


def llama_model(name: str, bin_path: Path, gguf: Path, mib: int, extra: str = "") -> str:
    cmd = " ".join(llama_server_cmd(bin_path, gguf))
    return f"  {name}:\n    cmd: {cmd}\n    env: [FAKE_VRAM_MIB={mib}]\n    gpus: [0]\n{extra}"


async def test_vram_real_llama_server_estimate_learned_and_eviction_until_fit(
    tmp_path: Path, llama_server_bin: Path, tiny_models: Path
) -> None:
    models = llama_model("a", llama_server_bin, tiny_models / "tiny-a.gguf", 16 * 1024)
    models += llama_model(
        "b", llama_server_bin, tiny_models / "tiny-b.gguf", 12 * 1024, "    vram: 12GiB\n"
    )
    nvml = WatchedNvml(gpus=[FakeGpu(total=24 * GIB)], live=True, release_lag_s=0.3)

    async with running_swapd(write_config(tmp_path, models), nvml) as (_, call):

        async def vram(model: str) -> dict[str, Any]:
            listing = (await call("GET", "/v1/models"))[1]
            (entry,) = [m for m in listing["data"] if m["id"] == model]
            return dict(entry["meta"]["swapd"]["vram"])

        before = await vram("a")
        # Read from the real GGUF: its weights, and the KV cache for llama-server's -c 1024.
        assert before["source"] == "estimate"
        assert "ctx 1024" in before["detail"]
        status, body = await call("POST", "/v1/chat/completions", chat("a"))
        assert status == 200
        assert body["choices"][0]["message"]["role"] == "assistant"

        async def learned() -> bool:
            return (await vram("a"))["source"] == "learned"

        await until(learned)
        assert (await vram("a"))["bytes"] == 16 * GIB
        # b (12 GiB) does not fit beside a's learned 16 GiB on a 24 GiB GPU: a makes room.
        status, _ = await call("POST", "/v1/chat/completions", chat("b"))
        assert status == 200
        running = {e["model"]: e for e in (await call("GET", "/running"))[1]["running"]}
        assert set(running) == {"b"}
        assert running["b"]["gpus"] == [0]
    assert nvml.peak[0] <= 24 * GIB
