"""Scheduler simulation: request traces replayed against the real schedulers on a virtual clock.

Loads, stops and services take simulated time; everything else is the production core
(FifoScheduler, SerialScheduler, OneModelPlanner) driven exactly as the router drives it. Reports
per scheduler and trace: swaps, wait (arrival -> grant) p50/p99/max, and throughput.

    python bench/sched_sim.py [--load 5] [--service 1] [--stop 0.5] [--seed 1]
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import math
import random
import statistics
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from swapd.core.events import (
    Event,
    RequestArrived,
    RequestReleased,
    StopFinished,
    SwapFinished,
    Tick,
)
from swapd.core.fifo import FifoScheduler
from swapd.core.plan import OneModelPlanner
from swapd.core.scheduler import Scheduler
from swapd.core.serial import SerialScheduler
from swapd.core.state import ModelRules, Rejection

MODELS = ("A", "B", "C")


@dataclass(frozen=True)
class Timing:
    load_s: float
    service_s: float
    stop_s: float


@dataclass
class Outcome:
    waits: list[float] = field(default_factory=list)
    swaps: int = 0
    rejected: int = 0
    served: int = 0
    end: float = 0.0


class Simulation:
    """A heap of timed actions; the scheduler sees events in time order, one at a time."""

    def __init__(self, make: Callable[..., Scheduler], timing: Timing) -> None:
        self.t = 0.0
        self.timing = timing
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()
        self._ids = itertools.count(1)
        self._arrived: dict[int, float] = {}
        self._on_done: dict[int, Callable[[], None]] = {}
        self._generation = itertools.count(1)
        self._tick_at = math.inf
        self.out = Outcome()
        rules = {m: ModelRules(concurrency_limit=1000) for m in MODELS}
        self.sched = make(self, OneModelPlanner(), rules, now=lambda: self.t)

    def at(self, t: float, action: Callable[[], None]) -> None:
        heapq.heappush(self._heap, (t, next(self._seq), action))

    def request(self, model: str, on_done: Callable[[], None] | None = None) -> None:
        rid = next(self._ids)
        self._arrived[rid] = self.t
        if on_done is not None:
            self._on_done[rid] = on_done
        self._deliver(RequestArrived(req_id=rid, model=model))

    def run(self) -> Outcome:
        while self._heap:
            self.t, _, action = heapq.heappop(self._heap)
            action()
        self.out.end = self.t
        return self.out

    def _deliver(self, ev: Event) -> None:
        match ev:
            case RequestArrived():
                self.sched.on_request(ev)
            case RequestReleased():
                self.sched.on_release(ev)
            case SwapFinished():
                self.sched.on_swap_finished(ev)
            case StopFinished():
                self.sched.on_stop_finished(ev)
            case Tick():
                self.sched.on_tick()
        deadline = self.sched.next_deadline()
        if deadline is not None and deadline < self._tick_at:
            self._tick_at = deadline
            self.at(deadline, self._tick)

    def _tick(self) -> None:
        self._tick_at = math.inf
        self._deliver(Tick())

    # -- Effects ----------------------------------------------------------------------------

    def start_swap(self, model: str, evict: tuple[str, ...]) -> None:
        self.out.swaps += 1
        took = (self.timing.stop_s if evict else 0.0) + self.timing.load_s
        gen = next(self._generation)
        self.at(self.t + took, lambda: self._deliver(SwapFinished(model=model, generation=gen)))

    def stop_models(self, models: tuple[str, ...], ticket: int | None) -> None:
        done = StopFinished(models=models, ticket=ticket)
        self.at(self.t + self.timing.stop_s, lambda: self._deliver(done))

    def grant(self, req_id: int, model: str) -> bool:
        self.out.waits.append(self.t - self._arrived.pop(req_id))
        self.at(self.t + self.timing.service_s, lambda: self._finish(req_id))
        return True

    def reject(self, req_id: int, rejection: Rejection) -> None:
        self.out.rejected += 1

    def unload_done(self, ticket: int) -> None:
        pass

    def _finish(self, req_id: int) -> None:
        self.out.served += 1
        self._deliver(RequestReleased(req_id=req_id))
        then = self._on_done.pop(req_id, None)
        if then is not None:
            then()


# -- traces -------------------------------------------------------------------------------


def mixed(sim: Simulation, rng: random.Random, n: int = 600, rate: float = 0.4) -> None:
    """Poisson arrivals, models drawn 60/30/10."""
    t = 0.0
    for _ in range(n):
        t += rng.expovariate(rate)
        model = rng.choices(MODELS, weights=(6, 3, 1))[0]
        sim.at(t, lambda m=model: sim.request(m))


def burst(sim: Simulation, rng: random.Random) -> None:
    """A B C A B C all at once, A already loaded."""
    sim.at(0.0, lambda: sim.request("A"))
    for i, model in enumerate("ABCABC"):
        sim.at(sim.timing.load_s + 0.001 * (i + 1), lambda m=model: sim.request(m))


def stream(
    sim: Simulation,
    rng: random.Random,
    clients: int = 4,
    until: float = 300.0,
    first_b: float = 30.0,
    every: float = 60.0,
    stagger: float = 0.25,
    gap: float = 0.003,
) -> None:
    """A is loaded, then four clients each send A again `gap` seconds after their last answer
    (a continuous stream; started `stagger` apart so they never all finish together), plus
    one request for B every `every` seconds."""

    def begin() -> None:
        t0 = sim.t

        def client() -> None:
            if sim.t < t0 + until:
                sim.request("A", on_done=lambda: sim.at(sim.t + gap, client))

        for i in range(clients):
            sim.at(t0 + stagger * i, client)
        t = t0 + first_b
        while t < t0 + until:
            sim.at(t, lambda: sim.request("B"))
            t += every

    sim.at(0.0, lambda: sim.request("A", on_done=begin))


TRACES: dict[str, Callable[[Simulation, random.Random], None]] = {
    "mixed 60/30/10, Poisson": mixed,
    "burst A B C A B C": burst,
    "stream of A (4 clients) + B every 60 s": stream,
}


def schedulers() -> Iterator[tuple[str, Callable[..., Scheduler]]]:
    yield "fifo (maxWait 30 s)", FifoScheduler
    yield (
        "fifo without bound (llama-swap)",
        lambda *a, **kw: FifoScheduler(*a, **kw, max_wait_s=math.inf),
    )
    yield "serial", SerialScheduler


def pct(values: list[float], q: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--load", type=float, default=5.0, help="seconds to load a model")
    ap.add_argument("--service", type=float, default=1.0, help="seconds to serve a request")
    ap.add_argument("--stop", type=float, default=0.5, help="seconds to stop a model")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    timing = Timing(load_s=args.load, service_s=args.service, stop_s=args.stop)
    print(f"load {timing.load_s} s, service {timing.service_s} s, stop {timing.stop_s} s")
    print("| trace | scheduler | swaps | wait p50 | wait p99 | wait max | served | req/s |")
    print("|---|---|---|---|---|---|---|---|")
    for trace_name, trace in TRACES.items():
        for sched_name, make in schedulers():
            sim = Simulation(make, timing)
            trace(sim, random.Random(args.seed))
            out = sim.run()
            print(
                f"| {trace_name} | {sched_name} | {out.swaps} "
                f"| {statistics.median(out.waits):.1f} s | {pct(out.waits, 0.99):.1f} s "
                f"| {max(out.waits):.1f} s | {out.served} | {out.served / out.end:.2f} |"
            )


if __name__ == "__main__":
    main()
