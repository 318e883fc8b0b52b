"""VRAM-aware placement on a real NVIDIA GPU: swapd, real NVML, children that hold real memory.

    python scripts/gpu_smoke.py [--scale 1.0]

Needs an NVIDIA driver (libnvidia-ml and libcuda); exits 2 without one. Three models on GPU 0,
each a fake server holding GPU memory through the CUDA driver (tests/fakes/gpu_hog.py):
`a` has no `vram` (swapd learns it from NVML), `b` and `c` declare theirs. Loading a, then b
(fits beside a), then c (does not fit: a, the least recently used, is evicted, and swapd waits
for the driver to release its memory) is checked through /api/gpus, /running and /v1/models,
and at the end no child is left and the GPU is back to where it started.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from swapd.gpu.nvml import open_monitor  # noqa: E402

GIB = 2**30


def gpu0() -> tuple[int, int] | None:
    async def look() -> tuple[int, int] | None:
        monitor = open_monitor()
        try:
            sample = await monitor.sample({})
            if sample is None or not sample.gpus:
                return None
            return sample.gpus[0].total, sample.gpus[0].used
        finally:
            await monitor.close()

    return asyncio.run(look())


def call(base: str, method: str, path: str, body: object = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(base + path, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=120) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", type=float, default=1.0, help="multiply every size (small GPUs)")
    args = ap.parse_args()
    start = gpu0()
    if start is None:
        print("gpu_smoke: no NVIDIA GPU visible through NVML")
        return 2
    total, used0 = start
    s = args.scale
    print(f"GPU 0: total {total / GIB:.1f} GiB, used {used0 / GIB:.2f} GiB at start")
    hog = ROOT / "tests" / "fakes" / "gpu_hog.py"

    def model(name: str, gib: float, extra: str = "") -> str:
        return (
            f"  {name}:\n    cmd: {sys.executable} {hog} --gib {gib * s:g} -- --port ${{PORT}}"
            f" --model {name}\n    gpus: [0]\n{extra}"
        )

    failures: list[str] = []

    def expect(ok: bool, what: str) -> None:
        print(("ok   " if ok else "FAIL ") + what)
        if not ok:
            failures.append(what)

    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "swapd.yaml"
        config.write_text(
            "healthCheckTimeout: 60\ngpuPollInterval: 0.2\n"
            f"vramStateFile: {tmp}/vram.json\n"
            "groups:\n  all:\n    swap: false\n    exclusive: false\n    members: [a, b, c]\n"
            "models:\n"
            + model("a", 20)
            + model("b", 30, f"    vram: {32 * s:g}GiB\n")
            + model("c", 30, f"    vram: {40 * s:g}GiB\n")
        )
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        log_path = Path(tmp) / "swapd.log"
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        }
        with log_path.open("wb") as log:
            daemon = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "swapd",
                    "-config",
                    str(config),
                    "-listen",
                    f"127.0.0.1:{port}",
                    "--log-level",
                    "info",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )
        base = f"http://127.0.0.1:{port}"
        try:
            for _ in range(200):
                try:
                    with urllib.request.urlopen(base + "/health", timeout=5) as resp:
                        if resp.status == 200:
                            break
                except OSError:
                    time.sleep(0.05)
            chat = lambda m: {"model": m, "messages": [{"role": "user", "content": "hi"}]}  # noqa: E731
            for name in ("a", "b", "c"):
                began = time.monotonic()
                status, body = call(base, "POST", "/v1/chat/completions", chat(name))
                took = (time.monotonic() - began) * 1000
                shown = "" if status == 200 else f" {body}"
                expect(status == 200, f"request for {name}: {status} in {took:.0f} ms{shown}")
                if name == "a":
                    time.sleep(1.0)  # a few monitor samples, so swapd learns a's footprint
                    models = {
                        m["id"]: m["meta"]["swapd"]
                        for m in call(base, "GET", "/v1/models")[1]["data"]
                    }
                    vram = models["a"].get("vram", {})
                    print(
                        "a in /v1/models:",
                        json.dumps(
                            {k: models["a"].get(k) for k in ("gpus", "vram", "vram_measured")}
                        ),
                    )
                    expect(vram.get("source") == "learned", "a's footprint learned from NVML")
                    expect(
                        abs(vram.get("bytes", 0) - 20 * s * GIB) < 1.5 * GIB,
                        "learned ~= the 20 GiB it holds (+ CUDA context)",
                    )
                view = call(base, "GET", "/api/gpus")[1]
                print(f"/api/gpus after {name}:", json.dumps(view["gpus"], indent=None))
            running = {e["model"]: e for e in call(base, "GET", "/running")[1]["running"]}
            print(
                "/running:",
                json.dumps(
                    {
                        m: {k: e.get(k) for k in ("gpus", "vram", "vram_measured")}
                        for m, e in running.items()
                    }
                ),
            )
            expect(
                set(running) == {"b", "c"},
                f"a was evicted for c, b kept: running {sorted(running)}",
            )
            expect(view["gpus"][0]["used_bytes"] <= total, "no over-commit")
        finally:
            daemon.send_signal(signal.SIGTERM)
            rc = daemon.wait(60)
        log_text = log_path.read_text(errors="replace")
        for line in log_text.splitlines():
            if any(
                k in line for k in ("swap start", "swap done", "vram", "gpu index", "not released")
            ):
                print("log:", line[:220])
        expect(rc == 0, f"swapd exited {rc} on SIGTERM")
    time.sleep(0.5)
    _, used_end = gpu0() or (0, -1)
    expect(
        abs(used_end - used0) < 256 * 2**20, f"GPU memory back to start: {used_end / GIB:.2f} GiB"
    )
    print("gpu_smoke:", "FAILED: " + "; ".join(failures) if failures else "all checks passed")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
