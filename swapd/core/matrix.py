"""Matrix swap policy: named sets of models that may run together, and the cheapest way to
make room for a target.

A set's expression allows some combinations of models (see `matrix_dsl`); any subset of an
allowed combination may run. To start target T while R runs, the solver considers every allowed
combination that contains T, in every set: the cost of one is the sum of the evict costs of the
models of R it leaves out. The cheapest wins. Ties go to the first set in definition order and,
within that set, to the combination that comes first when its expression is expanded left to
right (alternatives in written order, the left operand of `&` most significant), so the
alternative written first is preferred. A target in no set runs alone: everything is evicted.

Nothing is expanded. A query looks only at U = {T} ∪ R, as bitmasks, in two passes:
1. Cost: each node becomes its frontier, the maximal projections of its combinations onto U
   (memoized per node for the query; a node that mentions nothing in U is just {0}). A mask
   contained in another is dropped: it keeps fewer running models, and costs are positive, so
   it is never cheaper. The cheapest set and its cost follow from the roots' frontiers.
2. Tie-break, in the winning set only: descend from the root, taking at each `|` the first
   alternative and at each `&` operand the earliest combination that the rest of the
   expression can still complete into one of that cost. Whether a completion exists is
   monotone in the mask, so the frontiers of pass 1 answer it exactly.
The descent also yields the full combination (for the swap log), not just its projection.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Set
from dataclasses import dataclass, field
from typing import TypeAlias

from swapd.core.matrix_dsl import MatrixError, Node, Op, Program, compile_program
from swapd.core.plan import ModelUsage

__all__ = [
    "Matrix",
    "MatrixDecision",
    "MatrixError",
    "MatrixPlanner",
    "compile_matrix",
]

Witness: TypeAlias = "Node | tuple[Witness, Witness]"
"""How a combination was built: a node stands for its first combination."""


@dataclass(frozen=True, slots=True)
class Matrix:
    set_names: tuple[str, ...]
    _texts: tuple[str, ...] = field(repr=False)
    _vars: tuple[tuple[str, str], ...] = field(repr=False)
    _costs: tuple[tuple[str, int], ...] = field(repr=False)
    _program: Program = field(repr=False, compare=False)

    def dsl(self, set_name: str) -> str:
        """The set's expression as written; KeyError for an unknown set."""
        if set_name not in self.set_names:
            raise KeyError(set_name)
        return self._texts[self.set_names.index(set_name)]

    def cost(self, model: str) -> int:
        return self._program.costs.get(model, 1)

    def models(self) -> frozenset[str]:
        return frozenset(self._program.bits)

    def can_contain_all(self, models: Collection[str]) -> bool:
        """Some set allows all of `models` at once (a model in no set: never)."""
        required = _mask(self._program.bits, models)
        if required is None:
            return False
        return _Query(self._program, required, required, ()).best() is not None


def compile_matrix(
    sets: Mapping[str, str],
    vars: Mapping[str, str],
    evict_costs: Mapping[str, int],
    models: Collection[str],
) -> Matrix:
    """Raises MatrixError listing every problem at once."""
    program = compile_program(sets, vars, evict_costs, models)
    return Matrix(
        set_names=tuple(sets),
        _texts=tuple(sets.values()),
        _vars=tuple(sorted(vars.items())),
        _costs=tuple(sorted(program.costs.items())),
        _program=program,
    )


@dataclass(frozen=True, slots=True)
class MatrixDecision:
    set_name: str | None
    """None when the target is in no set (it runs alone)."""
    combination: frozenset[str]
    """The chosen allowed combination (model ids); it contains the target."""
    evict: tuple[str, ...]
    """Sorted."""
    cost: int


def decide(matrix: Matrix, target: str, running: Set[str]) -> MatrixDecision:
    """The cheapest way to start `target` while `running` runs (see the module docstring).

    A target already running evicts nothing; the decision then names the first set and
    combination that hold every running model, if one does.
    """
    program = matrix._program
    if target in running:
        return _keep_all(matrix, running)
    target_bit = program.bits.get(target)
    if target_bit is None:
        return _alone(matrix, target, running)
    known = [(program.bits[m], m) for m in running if m in program.bits]
    universe = 1 << target_bit
    for bit, _ in known:
        universe |= 1 << bit
    costed = tuple((1 << bit, matrix.cost(m)) for bit, m in known)
    best = _Query(program, universe, 1 << target_bit, costed).best()
    if best is None:
        return _alone(matrix, target, running)
    set_index, witness = best
    combination = _models_of(witness)
    evict = tuple(sorted(m for m in running if m not in combination))
    cost = sum(matrix.cost(m) for m in evict)
    return MatrixDecision(matrix.set_names[set_index], combination, evict, cost)


def _keep_all(matrix: Matrix, running: Set[str]) -> MatrixDecision:
    program = matrix._program
    required = _mask(program.bits, running)
    best = None if required is None else _Query(program, required, required, ()).best()
    if best is None:
        return MatrixDecision(None, frozenset(running), (), 0)
    set_index, witness = best
    return MatrixDecision(matrix.set_names[set_index], _models_of(witness), (), 0)


def _alone(matrix: Matrix, target: str, running: Set[str]) -> MatrixDecision:
    evict = tuple(sorted(running))
    return MatrixDecision(None, frozenset({target}), evict, sum(matrix.cost(m) for m in evict))


def _mask(bits: Mapping[str, int], models: Collection[str]) -> int | None:
    """The bits of `models`, or None when one of them is in no set."""
    mask = 0
    for model in models:
        bit = bits.get(model)
        if bit is None:
            return None
        mask |= 1 << bit
    return mask


class _Query:
    """One solve over `universe` (the bits that matter). The combination must keep `required`;
    `costed` is (bit, evict cost) of each running model of the universe."""

    def __init__(
        self,
        program: Program,
        universe: int,
        required: int,
        costed: tuple[tuple[int, int], ...],
    ) -> None:
        self._program = program
        self._universe = universe
        self._required = required
        self._costed = costed
        self._frontiers: dict[Node, list[int]] = {}
        self._costs: dict[int, int] = {}
        self._budget = 0

    def best(self) -> tuple[int, Witness] | None:
        """(set index, witness) of the cheapest combination keeping `required`, or None."""
        best: tuple[int, int] | None = None
        for set_index, root in enumerate(self._program.roots):
            if root.support & self._required != self._required:
                continue
            for mask in self._frontier(root):
                if mask & self._required == self._required:
                    cost = self._cost(mask)
                    if best is None or cost < best[0]:
                        best = (cost, set_index)
        if best is None:
            return None
        self._budget, set_index = best
        _, witness = self._earliest(self._program.roots[set_index], [0])
        return set_index, witness

    def _cost(self, mask: int) -> int:
        cost = self._costs.get(mask)
        if cost is None:
            cost = sum(c for bit, c in self._costed if not mask & bit)
            self._costs[mask] = cost
        return cost

    def _frontier(self, node: Node) -> list[int]:
        """The maximal projections of the node's combinations onto the universe."""
        if not node.support & self._universe:
            return [0]
        frontier = self._frontiers.get(node)
        if frontier is None:
            if node.op is Op.LEAF:
                frontier = [node.support]
            elif node.op is Op.ANY:
                frontier = _maximal(m for child in node.children for m in self._frontier(child))
            else:
                frontier = [0]
                for child in node.children:
                    frontier = _join(frontier, self._frontier(child))
            self._frontiers[node] = frontier
        return frontier

    def _feasible(self, masks: list[int], context: list[int]) -> bool:
        """Some mask joined with some context mask keeps `required` within the budget."""
        for mask in masks:
            for other in context:
                joined = mask | other
                if joined & self._required == self._required and self._cost(joined) <= self._budget:
                    return True
        return False

    def _earliest(self, node: Node, context: list[int]) -> tuple[int, Witness]:
        """(mask, witness) of the node's first combination in expansion order that some mask
        of `context` (what the rest of the combination can add) completes into an optimal one.
        Feasibility is monotone in the mask, so maximal masks are enough to decide it."""
        if not node.support & self._universe:
            return 0, node
        if node.op is Op.LEAF:
            return node.support, node
        if node.op is Op.ANY:
            child = next(c for c in node.children if self._feasible(self._frontier(c), context))
            return self._earliest(child, context)
        return self._earliest_product(node.children, context)

    def _earliest_product(
        self, children: tuple[Node, ...], context: list[int]
    ) -> tuple[int, Witness]:
        # The left operand is the most significant: fix each child in turn to its earliest
        # combination that the children after it (and the context) can still complete.
        after = [[0]]
        for child in reversed(children[1:]):
            after.append(_join(after[-1], self._frontier(child)))
        chosen, witness = self._earliest(children[0], _join(context, after.pop()))
        for child in children[1:]:
            outside = _join([m | chosen for m in context], after.pop())
            mask, child_witness = self._earliest(child, outside)
            chosen, witness = chosen | mask, (witness, child_witness)
        return chosen, witness


def _join(left: list[int], right: list[int]) -> list[int]:
    if right == [0]:
        return left
    if left == [0]:
        return right
    return _maximal(a | b for a in left for b in right)


def _maximal(masks: Iterable[int]) -> list[int]:
    """Drop every mask that another one contains: costs are positive, so it is never cheaper."""
    distinct = set(masks)
    if len(distinct) == 1:
        return list(distinct)
    kept: list[int] = []
    for mask in sorted(distinct, key=int.bit_count, reverse=True):
        if all(mask | other != other for other in kept):
            kept.append(mask)
    return kept


def _models_of(witness: Witness) -> frozenset[str]:
    models: set[str] = set()
    stack = [witness]
    while stack:
        item = stack.pop()
        if isinstance(item, tuple):
            stack.extend(item)
        elif item.op is Op.LEAF:
            models.add(item.model)
        elif item.op is Op.ANY:
            stack.append(item.children[0])
        else:
            stack.extend(item.children)
    return frozenset(models)


class MatrixPlanner:
    """The Planner for `use: matrix`. Remembers the latest decision per target (so at most one
    per model), so the scheduler's repeated questions while nothing changes cost a lookup even
    when it asks about several queued targets in turn, and `on_swap_start` finds the decision
    behind the swap it announces."""

    def __init__(self, matrix: Matrix) -> None:
        self._matrix = matrix
        self._latest: dict[str, tuple[frozenset[str], MatrixDecision]] = {}
        self._last_swap: MatrixDecision | None = None

    def decide(self, target: str, running: Set[str]) -> MatrixDecision:
        key = frozenset(running)
        cached = self._latest.get(target)
        if cached is not None and cached[0] == key:
            return cached[1]
        decision = decide(self._matrix, target, key)
        self._latest[target] = (key, decision)
        return decision

    def evictions(
        self, target: str, running: Set[str], usage: ModelUsage | None = None
    ) -> tuple[str, ...]:
        return self.decide(target, running).evict

    def on_swap_start(self, target: str, evict: tuple[str, ...]) -> None:
        """Records the decision behind this swap, or None if the swap did not come from the
        latest decision for `target`."""
        cached = self._latest.get(target)
        self._last_swap = cached[1] if cached is not None and cached[1].evict == evict else None

    def last_decision(self) -> MatrixDecision | None:
        return self._last_swap
