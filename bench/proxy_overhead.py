"""Proxy overhead: the same requests straight to llama-server and through swapd, same run.

For each concurrency level, direct and swapd runs alternate (`--runs` each) so both see the same
machine state; the table reports medians and swapd's added p50/p99 latency and throughput ratio.

    python bench/proxy_overhead.py [--runs 5] [--seconds 8] [--out bench/results/proxy.json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from harness import (
    WrkResult,
    direct_llama_server,
    machine,
    make_models,
    median,
    model_entry,
    swapd,
    wrk,
)

BODY = {
    "model": "tiny",
    "messages": [{"role": "user", "content": "Hello"}],
    "max_tokens": 4,
    "temperature": 0,
}
PATH = "/v1/chat/completions"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--seconds", type=int, default=8)
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--out", type=Path, default=Path("bench/results/proxy_overhead.json"))
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model = make_models(work, ("tiny",))["tiny"]
        config = "healthCheckTimeout: 30\nmodels:\n" + model_entry("tiny", model)
        results: dict[int, dict[str, list[WrkResult]]] = {}
        with direct_llama_server(model, work) as direct, swapd(config, work) as proxied:
            for target in (direct, proxied):  # warm-up; loads the model behind swapd
                wrk(target + PATH, BODY, connections=1, seconds=1)
            for conc in args.concurrency:
                runs: dict[str, list[WrkResult]] = {"direct": [], "swapd": []}
                for _ in range(args.runs):
                    runs["direct"].append(
                        wrk(direct + PATH, BODY, connections=conc, seconds=args.seconds)
                    )
                    runs["swapd"].append(
                        wrk(proxied + PATH, BODY, connections=conc, seconds=args.seconds)
                    )
                results[conc] = runs

    rows = []
    for conc, runs in results.items():
        d, s = runs["direct"], runs["swapd"]
        row = {
            "concurrency": conc,
            "direct_p50_ms": median([r.p50_ms for r in d]),
            "swapd_p50_ms": median([r.p50_ms for r in s]),
            "direct_p99_ms": median([r.p99_ms for r in d]),
            "swapd_p99_ms": median([r.p99_ms for r in s]),
            "direct_rps": median([r.rps for r in d]),
            "swapd_rps": median([r.rps for r in s]),
            "errors": sum(r.errors for r in d + s),
        }
        row["added_p50_ms"] = row["swapd_p50_ms"] - row["direct_p50_ms"]
        row["added_p99_ms"] = row["swapd_p99_ms"] - row["direct_p99_ms"]
        row["throughput_ratio"] = row["swapd_rps"] / row["direct_rps"]
        rows.append(row)

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps({"machine": machine(), "runs": args.runs, "rows": rows}, indent=2)
    )
    print(f"machine: {machine()}; {args.runs} runs of {args.seconds}s each, medians")
    print(
        "| concurrency | direct p50 | swapd p50 | added p50 | direct p99 | swapd p99 | added p99 "
        "| direct req/s | swapd req/s | ratio | errors |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['concurrency']} | {r['direct_p50_ms']:.2f} ms | {r['swapd_p50_ms']:.2f} ms "
            f"| {r['added_p50_ms']:+.2f} ms | {r['direct_p99_ms']:.2f} ms "
            f"| {r['swapd_p99_ms']:.2f} ms "
            f"| {r['added_p99_ms']:+.2f} ms | {r['direct_rps']:.0f} | {r['swapd_rps']:.0f} "
            f"| {r['throughput_ratio']:.2f}x | {r['errors']} |"
        )


if __name__ == "__main__":
    main()
