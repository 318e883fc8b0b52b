"""Placing a child on GPUs: ${GPUS}, CUDA_VISIBLE_DEVICES and CUDA's device numbering."""

from __future__ import annotations

from swapd.process.gpu_env import with_gpus


def test_gpu_env_fills_the_macro_and_exports_the_devices() -> None:
    argv, env = with_gpus(
        ["llama-server", "--device-list", "${GPUS}"], {"TAG": "on-${GPUS}", "HOME": "/h"}, (0, 2)
    )
    assert argv == ["llama-server", "--device-list", "0,2"]
    assert env == {
        "TAG": "on-0,2",
        "HOME": "/h",
        "CUDA_VISIBLE_DEVICES": "0,2",
        "CUDA_DEVICE_ORDER": "PCI_BUS_ID",
    }


def test_gpu_env_keeps_the_models_own_device_order() -> None:
    _, env = with_gpus(["x"], {"CUDA_DEVICE_ORDER": "FASTEST_FIRST"}, (1,))
    assert env["CUDA_DEVICE_ORDER"] == "FASTEST_FIRST"
    assert env["CUDA_VISIBLE_DEVICES"] == "1"


def test_gpu_env_without_placement_changes_nothing() -> None:
    argv, env = with_gpus(["x", "${GPUS}"], {"CUDA_VISIBLE_DEVICES": "3"}, None)
    assert argv == ["x", "${GPUS}"]
    assert env == {"CUDA_VISIBLE_DEVICES": "3"}
