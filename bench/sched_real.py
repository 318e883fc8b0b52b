"""Confirms bench/sched_sim.py against real processes.

The burst and stream traces (scaled down: load ~0.5 s, service 0.2 s, maxWait 2 s) run through
a real swapd whose models are tests/fakes/fake_upstream.py children with a simulated load time
(--start-delay) and service time (--response-delay). The same traces then run in the simulator
with the load and stop times measured in that run. Waits are latency minus service time.

    python bench/sched_real.py
"""

from __future__ import annotations

import asyncio
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from harness import ROOT, machine, swapd
from sched_sim import Simulation, Timing, pct

from swapd.core.fifo import FifoScheduler
from swapd.core.scheduler import Scheduler
from swapd.core.serial import SerialScheduler

FAKE = ROOT / "tests" / "fakes" / "fake_upstream.py"
START_DELAY_S = 0.3
SERVICE_S = 0.2
MAX_WAIT_S = 2.0
STREAM_S = 12.0
STAGGER_S = 0.05
"""Clients start this far apart, so their requests never all end at once (which would let
B through at every round, hiding the starvation the unbounded FIFO allows)."""
CLIENT_GAP_S = 0.003
"""A real client's next request comes a few milliseconds after its last answer."""
B_FIRST_S, B_EVERY_S = 2.0, 4.0


@dataclass
class Result:
    swaps: int
    waits: list[float]


def config(scheduler: str, max_wait: float) -> str:
    lines = ["healthCheckTimeout: 30", "models:"]
    for model in "ABC":
        lines += [
            f"  {model}:",
            f"    cmd: {sys.executable} {FAKE} --port ${{PORT}} --model {model}"
            f" --start-delay {START_DELAY_S} --response-delay {SERVICE_S}",
        ]
    lines += [
        "routing:",
        "  scheduler:",
        f"    use: {scheduler}",
        "    settings:",
        "      fifo:",
        f"        maxWait: {max_wait}",
    ]
    return "\n".join(lines) + "\n"


async def post(session: aiohttp.ClientSession, url: str, model: str, waits: list[float]) -> None:
    t0 = time.perf_counter()
    body = {"model": model, "prompt": "hi"}
    async with session.post(url + "/v1/completions", json=body) as r:
        await r.read()
        assert r.status == 200, r.status
    waits.append(max(0.0, time.perf_counter() - t0 - SERVICE_S))


async def real_burst(url: str, waits: list[float]) -> None:
    async with aiohttp.ClientSession() as s:
        await post(s, url, "A", [])
        await asyncio.gather(*(post(s, url, m, waits) for m in "ABCABC"))


async def real_stream(url: str, waits: list[float]) -> None:
    async with aiohttp.ClientSession() as s:
        await post(s, url, "A", [])  # loaded first, so the clients do not start in lockstep
        end = time.perf_counter() + STREAM_S

        async def client(i: int) -> None:
            await asyncio.sleep(i * STAGGER_S)
            while time.perf_counter() < end:
                await post(s, url, "A", waits)

        async def b_requests() -> None:
            await asyncio.sleep(B_FIRST_S)
            pending = []
            while time.perf_counter() < end:
                pending.append(asyncio.ensure_future(post(s, url, "B", waits)))
                await asyncio.sleep(B_EVERY_S)
            await asyncio.gather(*pending)

        await asyncio.gather(*(client(i) for i in range(4)), b_requests())


def run_real(
    scheduler: str, max_wait: float, trace: Callable[[str, list[float]], Awaitable[None]]
) -> tuple[Result, list[float], list[float]]:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        waits: list[float] = []
        with swapd(config(scheduler, max_wait), work, log_level="info") as url:
            asyncio.run(trace(url, waits))
        log = (work / "swapd.log").read_text()
    swaps = len(re.findall(r"swap start model=", log))
    loads = [float(x) / 1000 for x in re.findall(r"model started .* ready_ms=([\d.]+)", log)]
    stops = [float(x) / 1000 for x in re.findall(r"model stopped .* stop_ms=([\d.]+)", log)]
    return Result(swaps, waits), loads, stops


def run_sim(
    make: Callable[..., Scheduler], timing: Timing, trace: Callable[[Simulation], None]
) -> Result:
    sim = Simulation(make, timing)
    trace(sim)
    out = sim.run()
    return Result(out.swaps, out.waits)


def sim_burst(sim: Simulation) -> None:
    """As real_burst: A is loaded and its first request answered, then the six arrive."""
    sim.at(0.0, lambda: sim.request("A", on_done=lambda: [sim.request(m) for m in "ABCABC"]))


def sim_stream(sim: Simulation) -> None:
    """As real_stream: A loaded first, then four staggered clients and B every B_EVERY_S."""

    def begin() -> None:
        t0 = sim.t
        end = t0 + STREAM_S

        def client() -> None:
            if sim.t < end:
                sim.request("A", on_done=lambda: sim.at(sim.t + CLIENT_GAP_S, client))

        for i in range(4):
            sim.at(t0 + i * STAGGER_S, client)
        t = t0 + B_FIRST_S
        while t < end:
            sim.at(t, lambda: sim.request("B"))
            t += B_EVERY_S

    sim.at(0.0, lambda: sim.request("A", on_done=begin))


def row(trace: str, sched: str, kind: str, r: Result) -> str:
    waits = r.waits or [0.0]
    return (
        f"| {trace} | {sched} | {kind} | {r.swaps} | {statistics.median(waits):.2f} s "
        f"| {pct(waits, 0.99):.2f} s | {max(waits):.2f} s | {len(r.waits)} |"
    )


def main() -> None:
    schedulers: list[tuple[str, str, float, Callable[..., Scheduler]]] = [
        (
            "fifo (maxWait 2 s)",
            "fifo",
            MAX_WAIT_S,
            lambda *a, **kw: FifoScheduler(*a, **{**kw, "max_wait_s": MAX_WAIT_S}),
        ),
        (
            "fifo without bound",
            "fifo",
            1e6,
            lambda *a, **kw: FifoScheduler(*a, **{**kw, "max_wait_s": 1e6}),
        ),
        ("serial", "serial", MAX_WAIT_S, SerialScheduler),
    ]
    traces = [
        ("burst A B C A B C", real_burst, sim_burst),
        ("stream of A + B every 4 s", real_stream, sim_stream),
    ]
    print(f"machine: {machine()}")
    print("| trace | scheduler | run | swaps | wait p50 | wait p99 | wait max | requests |")
    print("|---|---|---|---|---|---|---|---|")
    for trace_name, real_trace, sim_trace in traces:
        for name, use, max_wait, make in schedulers:
            real, loads, stops = run_real(use, max_wait, real_trace)
            timing = Timing(
                load_s=statistics.median(loads),
                service_s=SERVICE_S,
                stop_s=statistics.median(stops) if stops else 0.0,
            )
            sim = run_sim(make, timing, sim_trace)
            print(row(trace_name, name, "real", real))
            print(row(trace_name, name, f"sim (load {timing.load_s:.2f} s)", sim))


if __name__ == "__main__":
    main()
