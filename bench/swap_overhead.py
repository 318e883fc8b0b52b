"""Swap overhead: what swapd adds to a request that needs a model swap.

Requests alternate between two models, so every request stops one llama-server and starts the
other. In the same run we measure, for the same binary and model:
  * ready: llama-server's own spawn -> first /health 200 (polled every 1 ms, no swapd),
  * serve: the same request against an already-ready model through swapd.
overhead = swap request latency - median(ready) - median(serve), reported as median and max;
the issue's literal definition (swap request latency - median(ready)) is reported as well.

    python bench/swap_overhead.py [--swaps 40] [--out bench/results/swap_overhead.json]
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from harness import (
    LLAMA_FLAGS,
    free_port,
    llama_server_bin,
    machine,
    make_models,
    model_entry,
    swapd,
)

BODY = {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2, "temperature": 0}


def post(base: str, model: str) -> float:
    host, port = base.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    body = json.dumps({**BODY, "model": model})
    t0 = time.perf_counter()
    conn.request("POST", "/v1/chat/completions", body, {"Content-Type": "application/json"})
    resp = conn.getresponse()
    resp.read()
    elapsed = time.perf_counter() - t0
    conn.close()
    if resp.status != 200:
        raise RuntimeError(f"{model}: HTTP {resp.status}")
    return elapsed * 1000


def spawn_to_ready_ms(model: Path) -> float:
    port = free_port()
    argv = [
        llama_server_bin(),
        "-m",
        str(model),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        *LLAMA_FLAGS,
    ]
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while True:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
                conn.request("GET", "/health")
                status = conn.getresponse().status
                conn.close()
                if status == 200:
                    return (time.perf_counter() - t0) * 1000
            except OSError:
                pass
            if proc.poll() is not None:
                raise RuntimeError("llama-server exited before it was ready")
            time.sleep(0.001)
    finally:
        proc.terminate()
        proc.wait(10)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--swaps", type=int, default=40)
    ap.add_argument("--out", type=Path, default=Path("bench/results/swap_overhead.json"))
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        models = make_models(work, ("a", "b"))
        config = "healthCheckTimeout: 30\nmodels:\n" + "".join(
            model_entry(name, path) for name, path in models.items()
        )
        swap_ms: list[float] = []
        ready_ms: list[float] = []
        serve_ms: list[float] = []
        with swapd(config, work) as base:
            post(base, "a")  # first load, not counted
            for i in range(args.swaps):
                target = "b" if i % 2 == 0 else "a"
                swap_ms.append(post(base, target))
                serve_ms.append(post(base, target))
                ready_ms.append(spawn_to_ready_ms(models[target]))

    ready, serve = statistics.median(ready_ms), statistics.median(serve_ms)
    overhead = [s - ready - serve for s in swap_ms]
    minus_ready = [s - ready for s in swap_ms]
    result = {
        "machine": machine(),
        "swaps": args.swaps,
        "swap_request_ms": {"median": statistics.median(swap_ms), "max": max(swap_ms)},
        "llama_server_spawn_to_ready_ms": {"median": ready, "max": max(ready_ms)},
        "served_request_ms": {"median": serve},
        "overhead_ms": {"median": statistics.median(overhead), "max": max(overhead)},
        "swap_minus_ready_ms": {"median": statistics.median(minus_ready), "max": max(minus_ready)},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
