"""Matrix solver speed: compile_matrix and MatrixPlanner.decide on a large, nested config.

40 models, 20 sets: 6 pools (alternations of models) and 14 composite sets, each an
alternation of conjunctions of pool references, single models (some through vars),
parenthesized alternatives and references to earlier composites. Every (target, running) pair
is distinct, so the planner's cache never answers; one row times the cache hit on its own.

    python bench/matrix_solver.py [--queries 5000] [--seed 7]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Callable

from swapd.core.matrix import Matrix, MatrixPlanner, compile_matrix
from swapd.core.matrix_dsl import AllOf, Expr, Name, OneOf, Ref, parse

FAMILIES = ("llama", "qwen", "mistral", "gemma", "phi", "deepseek", "granite", "nomic")
POOLS = ("chat", "code", "embed", "rerank", "vision", "draft")


def make_models() -> list[str]:
    return [f"org/{FAMILIES[i % len(FAMILIES)]}-{i}b:q4_k_m" for i in range(40)]


def make_sets(models: list[str], vars: dict[str, str], rng: random.Random) -> dict[str, str]:
    alias = {model: name for name, model in vars.items()}
    shuffled = rng.sample(models, len(models))
    sets: dict[str, str] = {}
    for i, pool in enumerate(POOLS):
        members = shuffled[i * 5 : i * 5 + rng.randint(4, 8)]
        sets[pool] = " | ".join(alias.get(m, m) for m in members)

    def atom(composites: list[str]) -> str:
        roll = rng.random()
        if roll < 0.45:
            return f"+{rng.choice(POOLS)}"
        if roll < 0.6 and composites:
            return f"+{rng.choice(composites)}"
        if roll < 0.8:
            return "(" + " | ".join(alias.get(m, m) for m in rng.sample(models, 3)) + ")"
        model = rng.choice(models)
        return alias.get(model, model)

    for i in range(14):
        composites = [name for name in sets if name.startswith("combo")]
        conjunctions = [
            " & ".join(atom(composites) for _ in range(rng.randint(2, 4)))
            for _ in range(rng.randint(2, 4))
        ]
        sets[f"combo{i}"] = " | ".join(f"({c})" for c in conjunctions)
    return sets


def build(seed: int) -> tuple[dict[str, str], dict[str, str], dict[str, int], list[str]]:
    rng = random.Random(seed)
    models = make_models()
    vars = {f"m{i}": models[i] for i in range(0, 40, 3)}
    sets = make_sets(models, vars, rng)
    costs = {model: rng.randint(1, 5) for model in rng.sample(models, 12)}
    return sets, vars, costs, models


def queries(models: list[str], count: int, rng: random.Random) -> list[tuple[str, frozenset[str]]]:
    seen: set[tuple[str, frozenset[str]]] = set()
    result: list[tuple[str, frozenset[str]]] = []
    while len(result) < count:
        target = rng.choice(models)
        others = [m for m in models if m != target]
        query = (target, frozenset(rng.sample(others, rng.randint(0, 8))))
        if query not in seen:
            seen.add(query)
            result.append(query)
    return result


def expansion_size(sets: dict[str, str]) -> int:
    """How many combinations a full Cartesian expansion of every set would list."""
    trees = {name: parse(text) for name, text in sets.items()}

    def size(expr: Expr) -> int:
        if isinstance(expr, Name):
            return 1
        if isinstance(expr, Ref):
            return size(trees[expr.set_name])
        sizes = [size(item) for item in expr.items]
        if isinstance(expr, OneOf):
            return sum(sizes)
        assert isinstance(expr, AllOf)
        product = 1
        for item_size in sizes:
            product *= item_size
        return product

    return sum(size(tree) for tree in trees.values())


def time_us(call: Callable[..., object], *args: object) -> float:
    start = time.perf_counter_ns()
    call(*args)
    return (time.perf_counter_ns() - start) / 1000


def row(name: str, samples: list[float]) -> str:
    median = statistics.median(samples)
    return f"| {name} | {len(samples)} | {median:.1f} | {max(samples):.1f} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()

    sets, vars, costs, models = build(args.seed)
    compile_us = [time_us(compile_matrix, sets, vars, costs, models) for _ in range(50)]
    matrix: Matrix = compile_matrix(sets, vars, costs, models)
    planner = MatrixPlanner(matrix)

    by_size: dict[str, list[float]] = {"0-2": [], "3-5": [], "6-8": []}
    every: list[float] = []
    for target, running in queries(models, args.queries, random.Random(args.seed + 1)):
        elapsed = time_us(planner.decide, target, running)
        every.append(elapsed)
        by_size["0-2" if len(running) <= 2 else "3-5" if len(running) <= 5 else "6-8"].append(
            elapsed
        )
    hits = [time_us(planner.decide, target, running) for _ in range(1000)]

    expanded = expansion_size(sets)
    print(f"{len(models)} models, {len(sets)} sets, {expanded:,} combinations if expanded\n")
    print("| measure | n | median µs | max µs |")
    print("|---|---|---|---|")
    print(row("compile_matrix", compile_us))
    for size, samples in by_size.items():
        print(row(f"decide, {size} running", samples))
    print(row("decide, all", every))
    print(row("decide, cache hit", hits))


if __name__ == "__main__":
    main()
