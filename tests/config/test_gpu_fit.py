"""Checking a loaded config against the host's GPUs: missing indices, models that never fit."""

from __future__ import annotations

from swapd.config.gpu_fit import fmt_bytes, gpu_problems
from swapd.config.sizes import GIB, MIB
from swapd.core.gpu_sample import GpuInfo
from tests.config.helpers import load

H100 = "NVIDIA H100 80GB HBM3"
H100_TOTAL = 81559 * MIB  # 79.6 GiB, as NVML reports it


def _gpu(index: int, total: int = H100_TOTAL, name: str = H100) -> GpuInfo:
    return GpuInfo(index=index, name=name, uuid=f"GPU-{index}", total=total, used=0, free=total)


TWO_H100 = [_gpu(0), _gpu(1)]


def _model(extra: str, headroom: str = "") -> str:
    return f"{headroom}models:\n  m:\n    cmd: server --port ${{PORT}}\n" + "".join(
        f"    {line}\n" for line in extra.splitlines()
    )


def test_a_config_that_fits_has_no_problems() -> None:
    config = load(
        """
        models:
          big:
            cmd: server --port ${PORT}
            vram: 150GiB
          pair:
            cmd: server --port ${PORT}
            vram: 70GiB
            gpus: [1, 0]
          split:
            cmd: server --port ${PORT}
            vram: 100GiB
            gpus: "0,1"
            gpuSplit: true
          unknown-size:
            cmd: server --port ${PORT}
            gpus: 1
        """
    )
    assert gpu_problems(config, TWO_H100) == []


def test_a_missing_gpu_index_names_the_host_gpus() -> None:
    config = load(
        """
        models:
          a:
            cmd: server --port ${PORT}
            gpus: [0, 3]
          b:
            cmd: server --port ${PORT}
            gpus: [2, 3, 1]
            vram: 1000GiB
        """
    )
    assert gpu_problems(config, TWO_H100) == [
        "models.a.gpus: GPU 3 does not exist; this host has GPUs 0-1 (2 × NVIDIA H100 80GB HBM3)",
        "models.b.gpus: GPUs 2, 3 do not exist; this host has GPUs 0-1 (2 × NVIDIA H100 80GB HBM3)",
    ]


def test_a_missing_gpu_on_hosts_of_other_shapes() -> None:
    config = load(_model("gpus: 4"))
    mixed = [_gpu(0, name="NVIDIA GeForce RTX 4090"), _gpu(2, name="NVIDIA GeForce RTX 3090")]
    assert gpu_problems(config, mixed) == [
        "models.m.gpus: GPU 4 does not exist; this host has GPUs 0, 2 (0: NVIDIA GeForce RTX "
        "4090, 2: NVIDIA GeForce RTX 3090)"
    ]
    assert gpu_problems(config, [_gpu(0)]) == [
        "models.m.gpus: GPU 4 does not exist; this host has GPU 0 (NVIDIA H100 80GB HBM3)"
    ]
    assert gpu_problems(config, []) == [
        "models.m.gpus: GPU 4 does not exist; this host has no GPUs"
    ]


def test_a_missing_gpu_taken_from_cuda_visible_devices_points_at_env() -> None:
    config = load(_model('env: ["CUDA_VISIBLE_DEVICES=1,2"]'))
    assert gpu_problems(config, TWO_H100) == [
        "models.m.env: CUDA_VISIBLE_DEVICES names GPU 2, which does not exist; this host has "
        "GPUs 0-1 (2 × NVIDIA H100 80GB HBM3)"
    ]


def test_one_gpu_model_too_big_for_its_largest_gpu() -> None:
    config = load(_model("vram: 90GiB\ngpus: [0, 1]"))
    small = _gpu(1, total=40 * GIB, name="NVIDIA A100-SXM4-40GB")
    assert gpu_problems(config, [_gpu(0), small]) == [
        "models.m.vram: needs 90.0 GiB + 0.5 GiB headroom, but its largest GPU "
        "(0: NVIDIA H100 80GB HBM3) has 79.6 GiB"
    ]
    single = load(_model("vram: 90GiB\ngpus: 1"))
    assert gpu_problems(single, TWO_H100) == [
        "models.m.vram: needs 90.0 GiB + 0.5 GiB headroom, but its GPU (1: NVIDIA H100 80GB "
        "HBM3) has 79.6 GiB"
    ]


def test_split_model_too_big_for_its_smallest_gpu() -> None:
    config = load(_model("vram: 100GiB\ngpus: [0, 1]\ngpuSplit: true"))
    small = _gpu(1, total=40 * GIB, name="NVIDIA A100-SXM4-40GB")
    assert gpu_problems(config, [_gpu(0), small]) == [
        "models.m.vram: needs 100.0 GiB split over 2 GPUs (50.0 GiB each) + 0.5 GiB headroom, "
        "but its smallest GPU (1: NVIDIA A100-SXM4-40GB) has 40.0 GiB"
    ]
    assert gpu_problems(config, TWO_H100) == []


def test_a_model_without_gpus_is_split_over_every_gpu() -> None:
    config = load(_model("vram: 170GiB"))
    assert gpu_problems(config, TWO_H100) == [
        "models.m.vram: needs 170.0 GiB split over all 2 GPUs (85.0 GiB each) + 0.5 GiB "
        "headroom, but its smallest GPU (0: NVIDIA H100 80GB HBM3) has 79.6 GiB"
    ]
    assert gpu_problems(config, [_gpu(0)]) == [
        "models.m.vram: needs 170.0 GiB + 0.5 GiB headroom, but its GPU (0: NVIDIA H100 80GB "
        "HBM3) has 79.6 GiB"
    ]
    assert gpu_problems(config, [*TWO_H100, _gpu(2)]) == []


def test_fits_exactly_with_the_headroom() -> None:
    headroom = "vramHeadroom: 1GiB\n"
    exact = load(_model("vram: 23GiB\ngpus: 0", headroom))
    assert gpu_problems(exact, [_gpu(0, total=24 * GIB)]) == []
    over = load(_model("vram: 23553\ngpus: 0", headroom))  # 23 GiB + 1 MiB
    assert gpu_problems(over, [_gpu(0, total=24 * GIB)]) == [
        "models.m.vram: needs 23.0 GiB + 1.0 GiB headroom, but its GPU (0: NVIDIA H100 80GB "
        "HBM3) has 24.0 GiB"
    ]
    split = load(_model("vram: 46GiB\ngpus: [0, 1]\ngpuSplit: true", headroom))
    assert gpu_problems(split, [_gpu(0, total=24 * GIB), _gpu(1, total=24 * GIB)]) == []
    no_headroom = load(_model("vram: 24GiB\ngpus: 0", "vramHeadroom: 0\n"))
    assert gpu_problems(no_headroom, [_gpu(0, total=24 * GIB)]) == []


def test_no_gpus_means_no_fit_problems() -> None:
    assert gpu_problems(load(_model("vram: 1TiB")), []) == []


def test_problems_come_in_model_order() -> None:
    config = load(
        """
        models:
          b:
            cmd: server --port ${PORT}
            vram: 1TiB
          a:
            cmd: server --port ${PORT}
            gpus: 7
        """
    )
    assert [p.split(":")[0] for p in gpu_problems(config, TWO_H100)] == [
        "models.b.vram",
        "models.a.gpus",
    ]


def test_fmt_bytes_is_exported_here_too() -> None:
    assert fmt_bytes(512 * MIB) == "512 MiB"
