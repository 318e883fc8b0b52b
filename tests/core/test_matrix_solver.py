"""Matrix solver and planner: examples from llama-swap's semantics, then property tests against
a brute force that expands every set into its combinations."""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

from swapd.core.matrix import Matrix, MatrixDecision, MatrixPlanner, compile_matrix
from swapd.core.plan import Planner

MODELS = ("a", "b", "c", "d", "t", "x", "y", "loner")


def matrix_of(sets: dict[str, str], costs: dict[str, int] | None = None) -> Matrix:
    return compile_matrix(sets, {}, costs or {}, MODELS)


def decide(matrix: Matrix, target: str, running: set[str]) -> MatrixDecision:
    return MatrixPlanner(matrix).decide(target, running)


# -- examples ------------------------------------------------------------------------------


def test_solver_target_already_running_evicts_nothing() -> None:
    matrix = matrix_of({"s": "a | b"})
    assert decide(matrix, "a", {"a", "b"}) == MatrixDecision(None, frozenset({"a", "b"}), (), 0)
    assert decide(matrix, "a", {"a"}) == MatrixDecision("s", frozenset({"a"}), (), 0)


def test_solver_target_in_no_set_runs_alone() -> None:
    matrix = matrix_of({"s": "a & b"}, costs={"a": 3})
    assert decide(matrix, "loner", {"a", "b"}) == MatrixDecision(
        None, frozenset({"loner"}), ("a", "b"), 4
    )


def test_solver_running_model_in_no_set_is_always_evicted() -> None:
    matrix = matrix_of({"s": "a & b"})
    assert decide(matrix, "a", {"b", "loner"}) == MatrixDecision(
        "s", frozenset({"a", "b"}), ("loner",), 1
    )


def test_solver_alternatives_under_a_conjunction() -> None:
    matrix = matrix_of({"s": "(a | b) & c"})
    assert decide(matrix, "c", {"a"}).evict == ()
    assert decide(matrix, "c", {"b"}).evict == ()
    assert decide(matrix, "a", {"b", "c"}).evict == ("b",)


def test_solver_subset_semantics_nothing_else_is_started() -> None:
    decision = decide(matrix_of({"s": "a & b & c"}), "a", set())
    assert decision == MatrixDecision("s", frozenset({"a", "b", "c"}), (), 0)


def test_solver_combination_names_models_of_branches_the_query_does_not_touch() -> None:
    decision = decide(matrix_of({"s": "a & (x | y) & (b | c)"}), "a", {"c"})
    assert decision.combination == frozenset({"a", "x", "c"})


def test_solver_prefers_the_cheaper_eviction() -> None:
    sets = {"ab": "a & b", "ac": "a & c"}
    assert decide(matrix_of(sets, costs={"b": 5}), "a", {"b", "c"}) == MatrixDecision(
        "ab", frozenset({"a", "b"}), ("c",), 1
    )
    assert decide(matrix_of(sets, costs={"c": 5}), "a", {"b", "c"}).set_name == "ac"


def test_solver_evicting_two_cheap_models_beats_one_dear_one() -> None:
    matrix = matrix_of({"keep_d": "a & d", "keep_bc": "a & b & c"}, costs={"d": 3})
    assert decide(matrix, "a", {"b", "c", "d"}).evict == ("b", "c")


def test_solver_equal_cost_goes_to_the_first_set_in_definition_order() -> None:
    sets = {"first": "+later & b", "later": "a", "other": "a & c"}
    assert decide(matrix_of(sets), "a", {"b", "c"}).set_name == "first"
    assert decide(matrix_of(dict(reversed(sets.items()))), "a", {"b", "c"}).set_name == "other"


def test_solver_equal_cost_within_a_set_goes_to_the_alternative_written_first() -> None:
    # llama-swap's tie-break test: t with a, b and c running must evict exactly one of them.
    matrix = matrix_of({"pool": "t | a | b | c", "all": "+pool & +pool & +pool"})
    assert decide(matrix, "t", {"a", "b", "c"}) == MatrixDecision(
        "all", frozenset({"t", "a", "b"}), ("c",), 1
    )
    assert decide(matrix_of({"s": "t & (b | a)"}), "t", {"a", "b"}).evict == ("a",)


def test_solver_can_contain_all() -> None:
    matrix = matrix_of({"s": "(a | b) & c", "u": "+s & d"})
    assert matrix.can_contain_all({"a", "c", "d"})
    assert not matrix.can_contain_all({"a", "b"})
    assert matrix.can_contain_all(set())
    assert not matrix.can_contain_all({"loner"})


def test_planner_implements_the_protocol_and_evictions_are_sorted() -> None:
    planner: Planner = MatrixPlanner(matrix_of({"s": "t & x"}))
    assert planner.evictions("t", {"d", "c", "x", "b"}) == ("b", "c", "d")


def test_planner_caches_the_latest_decision_per_target() -> None:
    planner = MatrixPlanner(matrix_of({"s": "a & b", "u": "c"}))
    first = planner.decide("a", {"b", "c"})
    assert planner.decide("c", {"a"}) is not first
    assert planner.decide("a", frozenset({"c", "b"})) is first
    assert planner.decide("a", {"c"}) is not first


def test_planner_records_the_decision_behind_a_swap() -> None:
    planner = MatrixPlanner(matrix_of({"s": "a & b", "u": "c"}))
    assert planner.last_decision() is None
    decision = planner.decide("a", {"b", "c"})
    planner.decide("c", {"a"})
    planner.on_swap_start("a", ("c",))
    assert planner.last_decision() is decision
    planner.on_swap_start("a", ("b", "c"))
    assert planner.last_decision() is None
    planner.on_swap_start("d", ())
    assert planner.last_decision() is None


# -- properties against a brute force ------------------------------------------------------

UNIVERSE = ("m0", "org/m1", "m2:q4", "m3", "m.4", "m_5", "m-6")
LONER = "loner"
VARS = {"v0": "m0", "v3": "m3"}


@dataclass(frozen=True)
class Leaf:
    model: str
    alias: bool


@dataclass(frozen=True)
class SetRef:
    name: str


@dataclass(frozen=True)
class Op:
    op: str
    items: tuple[Tree, ...]
    parenthesized: bool


Tree = Leaf | SetRef | Op


@dataclass(frozen=True)
class Case:
    trees: Mapping[str, Tree]
    """Set name -> tree, in definition order."""
    costs: Mapping[str, int]

    def matrix(self) -> Matrix:
        sets = {name: render(tree) for name, tree in self.trees.items()}
        by_key = {alias_of(m): c for m, c in self.costs.items()}
        return compile_matrix(sets, VARS, by_key, (*UNIVERSE, LONER))

    def cost(self, model: str) -> int:
        return self.costs.get(model, 1)


def alias_of(model: str) -> str:
    return next((alias for alias, m in VARS.items() if m == model), model)


def render(tree: Tree) -> str:
    if isinstance(tree, Leaf):
        return alias_of(tree.model) if tree.alias else tree.model
    if isinstance(tree, SetRef):
        return f"+{tree.name}"
    parts = []
    for item in tree.items:
        text = render(item)
        needs_parens = isinstance(item, Op) and item.op == "|" and not item.parenthesized
        parts.append(f"({text})" if tree.op == "&" and needs_parens else text)
    text = f" {tree.op} ".join(parts)
    return f"({text})" if tree.parenthesized else text


@functools.cache
def trees(ref_names: tuple[str, ...]) -> st.SearchStrategy[Tree]:
    leaf: st.SearchStrategy[Tree] = st.builds(Leaf, st.sampled_from(UNIVERSE), st.booleans())
    atoms = leaf | st.builds(SetRef, st.sampled_from(ref_names)) if ref_names else leaf

    def extend(children: st.SearchStrategy[Tree]) -> st.SearchStrategy[Tree]:
        items = st.lists(children, min_size=2, max_size=3).map(tuple)
        return st.builds(Op, st.sampled_from("&|"), items, st.booleans())

    return st.recursive(atoms, extend, max_leaves=6)


@st.composite
def cases(draw: st.DrawFn) -> Case:
    count = draw(st.integers(1, 5))
    # References only go to sets earlier in this order (so no cycles); definition order is a
    # separate permutation, so references to sets defined later happen too.
    names = [f"s{i}" for i in range(count)]
    built = {name: draw(trees(tuple(names[:i]))) for i, name in enumerate(names)}
    order = draw(st.permutations(names))
    costs = draw(st.dictionaries(st.sampled_from((*UNIVERSE, LONER)), st.integers(1, 4)))
    return Case({name: built[name] for name in order}, costs)


def expand(case: Case) -> dict[str, list[frozenset[str]]]:
    """Every set's distinct combinations, in order of first appearance in the expansion."""
    memo: dict[str, list[frozenset[str]]] = {}

    def combos(tree: Tree) -> list[frozenset[str]]:
        if isinstance(tree, Leaf):
            return [frozenset({tree.model})]
        if isinstance(tree, SetRef):
            if tree.name not in memo:
                memo[tree.name] = combos(case.trees[tree.name])
            return memo[tree.name]
        if tree.op == "|":
            return distinct(c for item in tree.items for c in combos(item))
        result = [frozenset[str]()]
        for item in tree.items:
            result = distinct(left | right for left in result for right in combos(item))
        return result

    return {name: combos(SetRef(name)) for name in case.trees}


def distinct(combos: Iterable[frozenset[str]]) -> list[frozenset[str]]:
    return list(dict.fromkeys(combos))


def brute_force(case: Case, target: str, running: frozenset[str]) -> MatrixDecision:
    expanded = expand(case)
    if target in running:
        for name, combos in expanded.items():
            for combo in combos:
                if running <= combo:
                    return MatrixDecision(name, combo, (), 0)
        return MatrixDecision(None, running, (), 0)
    best: tuple[int, str, frozenset[str]] | None = None
    for name, combos in expanded.items():
        for combo in combos:
            if target in combo:
                cost = sum(case.cost(m) for m in running - combo)
                if best is None or cost < best[0]:
                    best = (cost, name, combo)
    if best is None:
        evict = tuple(sorted(running))
        return MatrixDecision(None, frozenset({target}), evict, sum(map(case.cost, evict)))
    cost, name, combo = best
    return MatrixDecision(name, combo, tuple(sorted(running - combo)), cost)


models = st.sampled_from((*UNIVERSE, LONER))


@settings(max_examples=400, deadline=None)
@given(cases(), models, st.frozensets(models))
def test_property_solver_matches_brute_force(
    case: Case, target: str, running: frozenset[str]
) -> None:
    running -= {target}
    decision = MatrixPlanner(case.matrix()).decide(target, running)
    expected = brute_force(case, target, running)
    assert decision.cost == expected.cost
    assert decision.evict == tuple(sorted(running - decision.combination))
    assert target in decision.combination
    if decision.set_name is not None:
        assert decision.combination in expand(case)[decision.set_name]
    assert decision.set_name == expected.set_name
    assert decision == expected


@settings(max_examples=150, deadline=None)
@given(cases(), models, st.frozensets(models, min_size=1))
def test_property_target_already_running_matches_brute_force(
    case: Case, target: str, running: frozenset[str]
) -> None:
    running |= {target}
    decision = MatrixPlanner(case.matrix()).decide(target, running)
    assert decision == brute_force(case, target, running)


@settings(max_examples=150, deadline=None)
@given(cases(), st.frozensets(models, max_size=4))
def test_property_can_contain_all_matches_brute_force(case: Case, wanted: frozenset[str]) -> None:
    expected = any(wanted <= c for combos in expand(case).values() for c in combos)
    assert case.matrix().can_contain_all(wanted) == expected


@settings(max_examples=100, deadline=None)
@given(cases(), st.lists(st.tuples(models, st.frozensets(models)), min_size=1, max_size=8))
def test_property_cached_planner_agrees_with_a_fresh_one(
    case: Case, queries: list[tuple[str, frozenset[str]]]
) -> None:
    matrix = case.matrix()
    planner = MatrixPlanner(matrix)
    for target, running in queries + queries:
        assert planner.decide(target, running - {target}) == MatrixPlanner(matrix).decide(
            target, running - {target}
        )
