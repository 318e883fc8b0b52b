"""A child's argv and environment once it is placed on GPUs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

GPUS_MACRO = "${GPUS}"


def with_gpus(
    argv: Sequence[str], env: Mapping[str, str], gpus: Sequence[int] | None
) -> tuple[list[str], dict[str, str]]:
    """Fill in `${GPUS}` and export CUDA_VISIBLE_DEVICES for the GPUs the model was placed on.

    CUDA numbers devices fastest first unless told otherwise, NVML by PCI bus; the indices
    swapd plans with are NVML's, so CUDA is told to number by PCI bus too (unless the model's
    env already says how).
    """
    if gpus is None:
        return list(argv), dict(env)
    joined = ",".join(str(g) for g in gpus)
    out_env = {name: value.replace(GPUS_MACRO, joined) for name, value in env.items()}
    out_env["CUDA_VISIBLE_DEVICES"] = joined
    out_env.setdefault("CUDA_DEVICE_ORDER", "PCI_BUS_ID")
    return [arg.replace(GPUS_MACRO, joined) for arg in argv], out_env
