"""A fake model server that really holds GPU memory: for checks on a host with an NVIDIA GPU.

    python tests/fakes/gpu_hog.py --gib N -- <fake_upstream.py arguments>

Allocates N GiB on the first GPU in CUDA_VISIBLE_DEVICES through the CUDA driver API (ctypes,
no toolkit or torch needed), then serves as tests/fakes/fake_upstream.py does. The memory is
freed by the driver when the process exits.
"""

from __future__ import annotations

import argparse
import ctypes
import runpy
import sys
from pathlib import Path


def hold_gpu_memory(gib: float) -> ctypes.c_uint64:
    cuda = ctypes.CDLL("libcuda.so.1")

    def check(rc: int, what: str) -> None:
        if rc != 0:
            raise SystemExit(f"gpu_hog: {what} failed with CUDA error {rc}")

    check(cuda.cuInit(0), "cuInit")
    device = ctypes.c_int()
    check(cuda.cuDeviceGet(ctypes.byref(device), 0), "cuDeviceGet")
    context = ctypes.c_void_p()
    check(cuda.cuDevicePrimaryCtxRetain(ctypes.byref(context), device), "cuDevicePrimaryCtxRetain")
    check(cuda.cuCtxSetCurrent(context), "cuCtxSetCurrent")
    pointer = ctypes.c_uint64()
    size = ctypes.c_size_t(int(gib * 2**30))
    check(cuda.cuMemAlloc_v2(ctypes.byref(pointer), size), f"cuMemAlloc of {gib} GiB")
    return pointer


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--gib", type=float, required=True)
    ap.add_argument("rest", nargs=argparse.REMAINDER)
    args = ap.parse_args()
    held = hold_gpu_memory(args.gib)
    print(f"gpu_hog: holding {args.gib} GiB at {held.value:#x}", file=sys.stderr, flush=True)
    rest = args.rest[1:] if args.rest[:1] == ["--"] else args.rest
    fake = Path(__file__).resolve().parent / "fake_upstream.py"
    sys.argv = [str(fake), *rest]
    runpy.run_path(str(fake), run_name="__main__")


if __name__ == "__main__":
    main()
