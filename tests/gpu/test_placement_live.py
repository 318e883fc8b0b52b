"""VRAM-aware placement end to end: swapd in-process, real child processes, a fake NVML.

The fake NVML runs in live mode: a child whose environment has FAKE_VRAM_MIB uses that much
memory on the GPUs in the CUDA_VISIBLE_DEVICES swapd gave it, and its memory lingers for a
while after it exits, like a driver that frees late. So placement, eviction until fit, the wait
for release and learning footprints are all observed through the GPU, not through swapd.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from swapd.errors import ConfigError
from tests.fakes.fake_nvml import GIB, MIB, FakeGpu, FakeNvml
from tests.gpu.harness import WatchedNvml, chat, model, running_swapd, until, write_config


def placed(gpus_view: dict[str, Any]) -> dict[str, set[str]]:
    return {str(g["index"]): {m["model"] for m in g["models"]} for g in gpus_view["gpus"]}


async def test_live_models_are_placed_where_they_fit_and_evicted_until_one_fits(
    tmp_path: Path,
) -> None:
    nvml = WatchedNvml(
        gpus=[FakeGpu(total=24 * GIB), FakeGpu(total=24 * GIB)], live=True, release_lag_s=0.5
    )
    models = "".join(model(m, 16 * 1024, "    vram: 16GiB\n    gpus: [0, 1]\n") for m in "abc")
    async with running_swapd(write_config(tmp_path, models), nvml) as (_, call):
        assert (await call("POST", "/v1/chat/completions", chat("a")))[0] == 200
        assert (await call("POST", "/v1/chat/completions", chat("b")))[0] == 200
        status, view = await call("GET", "/api/gpus")
        assert status == 200
        assert view["planning"] is True
        assert placed(view) == {"0": {"a"}, "1": {"b"}}
        # c fits on neither GPU beside a 16 GiB model: a, used least recently, makes room.
        assert (await call("POST", "/v1/chat/completions", chat("c")))[0] == 200

        async def measured() -> bool:
            view = (await call("GET", "/api/gpus"))[1]
            found = {g["index"]: g["models"] for g in view["gpus"]}
            return [m.get("measured_bytes") for m in found[0]] == [16 * GIB]

        await until(measured)
        view = (await call("GET", "/api/gpus"))[1]
        assert placed(view) == {"0": {"c"}, "1": {"b"}}
        running = {e["model"]: e for e in (await call("GET", "/running"))[1]["running"]}
        assert set(running) == {"b", "c"}
        assert running["c"]["gpus"] == [0]
        assert running["c"]["vram"] == {"bytes": 16 * GIB, "source": "config"}
    # a's memory lingered 0.5 s after it exited; c was started only once it was gone.
    assert nvml.peak[0] <= 24 * GIB
    assert nvml.peak[1] <= 24 * GIB


async def test_live_learned_footprint_replaces_the_estimate_and_survives_a_restart(
    tmp_path: Path,
) -> None:
    weights = tmp_path / "est.gguf"
    with weights.open("wb") as f:
        f.truncate(GIB)  # sparse: a 1 GiB file that takes no disk
    nvml = FakeNvml(gpus=[FakeGpu(total=24 * GIB)], live=True)
    extra = "    gpus: [0]\n"
    models = model("est", 3000, extra).replace("--model est", f"--model est -m {weights}")
    config = write_config(tmp_path, models)

    def vram_of(listing: dict[str, Any]) -> dict[str, Any]:
        (entry,) = [m for m in listing["data"] if m["id"] == "est"]
        return dict(entry["meta"]["swapd"]["vram"])

    async with running_swapd(config, nvml) as (_, call):
        before = vram_of((await call("GET", "/v1/models"))[1])
        assert before["source"] == "estimate"
        assert before["bytes"] == GIB + 512 * MIB
        assert (await call("POST", "/v1/chat/completions", chat("est")))[0] == 200

        async def learned() -> bool:
            return vram_of((await call("GET", "/v1/models"))[1])["source"] == "learned"

        await until(learned)
        assert vram_of((await call("GET", "/v1/models"))[1])["bytes"] == 3000 * MIB

    state = json.loads((tmp_path / "vram.json").read_text())
    assert state["models"]["est"]["bytes"] == 3000 * MIB
    async with running_swapd(config, FakeNvml(gpus=[FakeGpu(total=24 * GIB)], live=True)) as (
        _,
        call,
    ):
        again = vram_of((await call("GET", "/v1/models"))[1])
        assert again == {"bytes": 3000 * MIB, "source": "learned"}


async def test_live_model_that_cannot_fit_beside_other_processes_gets_503(
    tmp_path: Path,
) -> None:
    nvml = FakeNvml(gpus=[FakeGpu(total=24 * GIB, baseline=20 * GIB)], live=True)
    models = model("a", 1024, "    vram: 8GiB\n") + model("small", 1024, "    vram: 1GiB\n")
    async with running_swapd(write_config(tmp_path, models), nvml) as (_, call):
        status, body = await call("POST", "/v1/chat/completions", chat("a"))
        assert status == 503
        message = body["error"]["message"]
        assert "needs 8.0 GiB of VRAM (config)" in message
        assert "20.0 GiB used by other processes" in message
        # Nothing got stuck: a model that fits is served next.
        assert (await call("POST", "/v1/chat/completions", chat("small")))[0] == 200


async def test_live_config_asking_for_more_vram_than_the_gpu_has_starts_nothing(
    tmp_path: Path,
) -> None:
    nvml = FakeNvml(gpus=[FakeGpu(name="Small GPU", total=8 * GIB)], live=True)
    models = model("huge", 1024, "    vram: 30GiB\n")
    with pytest.raises(ConfigError) as info:
        async with running_swapd(write_config(tmp_path, models), nvml):
            pytest.fail("swapd started with a model that can never fit")
    assert "models.huge.vram" in str(info.value)
    assert "Small GPU" in str(info.value)
    assert nvml.shutdown_calls == 1


async def test_live_without_nvml_everything_still_works(tmp_path: Path) -> None:
    nvml = FakeNvml(missing=True)
    models = model("a", 1024, "    vram: 8GiB\n    gpus: [1]\n")
    async with running_swapd(write_config(tmp_path, models), nvml) as (_, call):
        assert (await call("POST", "/v1/chat/completions", chat("a")))[0] == 200
        view = (await call("GET", "/api/gpus"))[1]
        assert view["monitor"] == "none"
        assert view["planning"] is False
        assert view["gpus"] == []
        (entry,) = (await call("GET", "/running"))[1]["running"]
        assert entry["gpus"] == [1]  # exported as configured, without planning
    assert nvml.shutdown_calls == 0
