"""Load: many concurrent streaming clients through swapd to fast fake upstreams on loopback.

Each client loops until the time is up: POST a streaming /v1/chat/completions (`"stream": true`)
through swapd to tests/fakes/fake_upstream.py (`--chunks 20 --chunk-delay 0.05` by default),
read the SSE stream to `data: [DONE]`, and start the next one. Reported: errors by kind (must be
0), requests, req/s and chunks/s, time to first byte (the first body chunk) and to the full
response, and swapd's RSS, open fds, threads and children before, at peak and after the load
plus an idle pause.

    python bench/load.py [--clients 500] [--seconds 20] [--procs 2]
    python bench/load.py --soak 3 [--clients 200]   # 3 models in one exclusive group: swaps

Without --soak every request goes to model `a`; with it each request picks one of `a`, `b`,
`c` at random, so the group keeps swapping. The clients run in `--procs` processes (aiohttp,
uvloop), each driving clients/procs streams. The fd limit is raised before swapd is spawned, so
swapd and its children inherit it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import resource
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
from harness import ROOT, machine, swapd

FAKE = ROOT / "tests" / "fakes" / "fake_upstream.py"
PATH = "/v1/chat/completions"


@dataclass
class Outcome:
    ttfb: list[float] = field(default_factory=list)
    total: list[float] = field(default_factory=list)
    chunks: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    by_model: Counter[str] = field(default_factory=Counter)


def raise_nofile() -> tuple[int, int]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


async def _client(
    session: Any, url: str, models: list[str], until: float, start_at: float, out: Outcome
) -> None:
    import aiohttp

    await asyncio.sleep(max(0.0, start_at - time.monotonic()))
    rng = random.Random()
    while time.monotonic() < until:
        model = rng.choice(models)
        body = {"model": model, "stream": True, "messages": [{"role": "user", "content": "Hi"}]}
        t0 = time.perf_counter()
        ttfb = None
        buf = bytearray()
        try:
            async with session.post(url, json=body) as resp:
                if resp.status != 200:
                    text = (await resp.text())[:80]
                    out.errors[f"HTTP {resp.status}: {text}"] += 1
                    continue
                async for data in resp.content.iter_any():
                    if ttfb is None:
                        ttfb = time.perf_counter() - t0
                    buf += data
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            out.errors[f"{type(exc).__name__}: {str(exc)[:60]}"] += 1
            continue
        if not buf.endswith(b"data: [DONE]\n\n"):
            out.errors["stream ended without [DONE]"] += 1
            continue
        out.total.append(time.perf_counter() - t0)
        out.ttfb.append(ttfb if ttfb is not None else 0.0)
        out.chunks += buf.count(b"data: ") - 1
        out.by_model[model] += 1


async def _drive(
    url: str, clients: int, models: list[str], start: float, seconds: float, ramp: float
) -> Outcome:
    import aiohttp

    out = Outcome()
    until = start + seconds
    timeout = aiohttp.ClientTimeout(total=300)
    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        await asyncio.gather(
            *(
                _client(session, url, models, until, start + ramp * i / clients, out)
                for i in range(clients)
            )
        )
    return out


def worker(
    url: str, clients: int, models: list[str], start: float, seconds: float, ramp: float
) -> dict[str, Any]:
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    cpu0 = time.process_time()
    out = asyncio.run(_drive(url, clients, models, start, seconds, ramp))
    return {
        "ttfb": out.ttfb,
        "total": out.total,
        "chunks": out.chunks,
        "errors": dict(out.errors),
        "by_model": dict(out.by_model),
        "cpu_s": time.process_time() - cpu0,
    }


def snapshot(pid: int) -> dict[str, Any]:
    p = psutil.Process(pid)
    children = p.children(recursive=True)
    return {
        "rss_mib": p.memory_info().rss / 2**20,
        "fds": p.num_fds(),
        "threads": p.num_threads(),
        "tcp": len(p.net_connections(kind="tcp")),
        "children": sorted(c.pid for c in children),
        "cpu_s": sum(p.cpu_times()[:2]),
    }


def run_round(
    args: argparse.Namespace, pid: int, url: str, models: list[str], seconds: float
) -> tuple[list[dict[str, Any]], float, dict[str, Any], dict[str, Any], dict[str, Any]]:
    peak = snapshot(pid)
    start = time.monotonic() + 0.5
    per = [args.clients // args.procs + (i < args.clients % args.procs) for i in range(args.procs)]
    with ProcessPoolExecutor(args.procs) as pool:
        futs = [pool.submit(worker, url, n, models, start, seconds, args.ramp) for n in per if n]
        while not all(f.done() for f in futs):
            s = snapshot(pid)
            for k in ("rss_mib", "fds", "threads", "tcp"):
                peak[k] = max(peak[k], s[k])
            peak["children_max"] = max(peak.get("children_max", 0), len(s["children"]))
            time.sleep(0.25)
        parts = [f.result() for f in futs]
    elapsed = time.monotonic() - start
    end_load = snapshot(pid)
    time.sleep(args.idle)
    return parts, elapsed, peak, end_load, snapshot(pid)


def config(models: list[str], chunks: int, delay: float, limit: int) -> str:
    lines = ["healthCheckTimeout: 30", "models:"]
    for m in models:
        lines += [
            f"  {m}:",
            f"    cmd: {sys.executable} {FAKE} --port ${{PORT}} --model {m} "
            f"--chunks {chunks} --chunk-delay {delay}",
            f"    concurrencyLimit: {limit}",
        ]
    lines += [
        "groups:",
        "  load:",
        "    swap: true",
        "    exclusive: true",
        f"    members: [{', '.join(models)}]",
    ]
    return "\n".join(lines) + "\n"


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))] * 1000


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clients", type=int, default=500)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--soak", type=float, default=None, metavar="MINUTES")
    ap.add_argument("--procs", type=int, default=2, help="client processes")
    ap.add_argument("--chunks", type=int, default=20)
    ap.add_argument("--chunk-delay", type=float, default=0.05)
    ap.add_argument("--ramp", type=float, default=1.0, help="seconds over which clients start")
    ap.add_argument("--idle", type=float, default=5.0, help="pause before the 'after' sample")
    ap.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="load rounds against the same swapd (the table shows the last)",
    )
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()

    nofile = raise_nofile()
    soak = args.soak is not None
    seconds = args.soak * 60 if args.soak is not None else args.seconds
    models = ["a", "b", "c"] if soak else ["a"]
    out_path = args.out or Path(f"bench/results/{'soak' if soak else 'load'}.json")
    load_before = psutil.getloadavg()

    with tempfile.TemporaryDirectory() as tmp:
        cfg = config(["a", "b", "c"], args.chunks, args.chunk_delay, max(1000, args.clients))
        with swapd(cfg, Path(tmp)) as base:
            url = base + PATH
            body = json.dumps({"model": "a", "stream": True, "messages": []}).encode()
            req = urllib.request.Request(url, body, {"Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=60) as r:  # warm-up: starts model a
                r.read()
            pid = next(
                c.pid for c in psutil.Process().children() if "swapd" in " ".join(c.cmdline())
            )
            swapd_nofile = psutil.Process(pid).rlimit(resource.RLIMIT_NOFILE)
            time.sleep(1.0)
            before = snapshot(pid)
            rounds = []
            for _ in range(args.rounds):
                rounds.append(run_round(args, pid, url, models, seconds))
            parts, elapsed, peak, end_load, after = rounds[-1]
            spawned = psutil.Process(pid).children(recursive=True)
            with urllib.request.urlopen(base + "/metrics", timeout=10) as r:
                metrics = r.read().decode()
            swaps = sum(
                float(line.rsplit(" ", 1)[1])
                for line in metrics.splitlines()
                if line.startswith("swapd_swaps_total")
            )
        # swapd has been stopped: none of its children may survive it.
        leftovers = [c.pid for c in spawned if c.is_running() and c.status() != "zombie"]

    ttfb = [x for p in parts for x in p["ttfb"]]
    total = [x for p in parts for x in p["total"]]
    errors: Counter[str] = Counter()
    by_model: Counter[str] = Counter()
    for p in parts:
        errors.update(p["errors"])
        by_model.update(p["by_model"])
    chunks = sum(p["chunks"] for p in parts)
    result = {
        "machine": machine(),
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "loadavg_before": load_before,
        "mode": "soak" if soak else "load",
        "clients": args.clients,
        "procs": args.procs,
        "seconds": elapsed,
        "nofile_bench": nofile,
        "nofile_swapd": swapd_nofile,
        "requests": len(total),
        "swaps_total_all_rounds": swaps,
        "by_model": dict(by_model),
        "errors": dict(errors),
        "req_per_s": len(total) / elapsed,
        "chunks_per_s": chunks / elapsed,
        "ttfb_p50_ms": pct(ttfb, 0.5),
        "ttfb_p99_ms": pct(ttfb, 0.99),
        "ttfb_max_ms": max(ttfb, default=0) * 1000,
        "total_p50_ms": pct(total, 0.5),
        "total_p99_ms": pct(total, 0.99),
        "client_cpu_s": [p["cpu_s"] for p in parts],
        "swapd_cpu_s": end_load["cpu_s"] - peak["cpu_s"],
        "before": before,
        "peak": peak,
        "end_of_load": end_load,
        "after": after,
        "children_left_after_stop": leftovers,
        "rounds": [
            {
                "requests": sum(len(p["total"]) for p in r[0]),
                "errors": sum(sum(p["errors"].values()) for p in r[0]),
                "peak_rss_mib": r[2]["rss_mib"],
                "after_rss_mib": r[4]["rss_mib"],
                "after_fds": r[4]["fds"],
                "after_threads": r[4]["threads"],
            }
            for r in rounds
        ],
    }
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(result, indent=2))

    print(f"machine: {machine()}; load average before {load_before[0]:.2f}")
    print(
        f"{result['mode']}: {args.clients} clients in {args.procs} processes, {elapsed:.0f} s, "
        f"models {models}; nofile bench {nofile}, swapd {swapd_nofile}"
    )
    print("| requests | errors | req/s | chunks/s | TTFB p50 | TTFB p99 | full p50 | full p99 |")
    print("|---|---|---|---|---|---|---|---|")
    print(
        f"| {len(total)} | {sum(errors.values())} | {result['req_per_s']:.0f} "
        f"| {result['chunks_per_s']:.0f} | {result['ttfb_p50_ms']:.1f} ms "
        f"| {result['ttfb_p99_ms']:.1f} ms | {result['total_p50_ms']:.0f} ms "
        f"| {result['total_p99_ms']:.0f} ms |"
    )
    print()
    print(f"| swapd | before | peak | end of load | after {args.idle:.0f} s idle |")
    print("|---|---|---|---|---|")
    for k, label in (
        ("rss_mib", "RSS MiB"),
        ("fds", "open fds"),
        ("threads", "threads"),
        ("tcp", "TCP sockets"),
    ):
        print(f"| {label} | {before[k]:.0f} | {peak[k]:.0f} | {end_load[k]:.0f} | {after[k]:.0f} |")
    print(
        f"| children | {len(before['children'])} | {peak.get('children_max', 0)} "
        f"| {len(end_load['children'])} | {len(after['children'])} |"
    )
    print()
    cpu = ", ".join(f"{c:.1f}" for c in result["client_cpu_s"])
    print(
        f"swapd CPU {result['swapd_cpu_s']:.1f} s; client processes CPU {cpu} s; "
        f"children alive after swapd stopped: {leftovers or 'none'}"
    )
    if args.rounds > 1:
        print(
            "| round | requests | errors | peak RSS | RSS after idle | fds after | threads after |"
        )
        print("|---|---|---|---|---|---|---|")
        for i, r in enumerate(result["rounds"], 1):
            print(
                f"| {i} | {r['requests']} | {r['errors']} | {r['peak_rss_mib']:.0f} MiB "
                f"| {r['after_rss_mib']:.0f} MiB | {r['after_fds']} | {r['after_threads']} |"
            )
    if by_model:
        print(f"requests by model: {dict(sorted(by_model.items()))}; swaps: {swaps:.0f}")
    for kind, n in errors.most_common():
        print(f"error x{n}: {kind}")
    if errors or leftovers:
        sys.exit(1)


if __name__ == "__main__":
    main()
