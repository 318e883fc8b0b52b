"""GroupPlanner: llama-swap's group eviction rule row by row, and the symmetric variant."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from swapd.core.groups import DEFAULT_GROUP, GroupPlanner, GroupSpec
from swapd.core.plan import Planner


def _planner(
    target: GroupSpec, other: GroupSpec | None = None, *, symmetric: bool = False
) -> GroupPlanner:
    groups = [target] if other is None else [target, other]
    models = [m for g in groups for m in g.members]
    return GroupPlanner(groups, models, symmetric=symmetric)


def test_group_planner_is_a_planner() -> None:
    planner: Planner = GroupPlanner([], ["a"])
    assert planner.evictions("a", frozenset()) == ()
    planner.on_swap_start("a", ())


# Same group: only `swap` of the group matters, whatever the other flags.
@pytest.mark.parametrize(
    ("swap", "exclusive", "persistent"), list(itertools.product([True, False], repeat=3))
)
@pytest.mark.parametrize("symmetric", [False, True])
def test_same_group_evicts_iff_swap(
    swap: bool, exclusive: bool, persistent: bool, symmetric: bool
) -> None:
    g = GroupSpec(id="g", members=("t", "m"), swap=swap, exclusive=exclusive, persistent=persistent)
    planner = _planner(g, symmetric=symmetric)
    assert planner.evictions("t", {"m"}) == (("m",) if swap else ())


# Other group: (target exclusive, target persistent, running exclusive, running persistent)
# -> (llama-swap evicts, symmetric evicts). `swap` never matters across groups.
CROSS_GROUP = [
    ((False, False, False, False), (False, False)),
    ((False, False, False, True), (False, False)),
    ((False, False, True, False), (False, True)),  # the asymmetry symmetric mode fixes
    ((False, False, True, True), (False, False)),
    ((False, True, False, False), (False, False)),
    ((False, True, False, True), (False, False)),
    ((False, True, True, False), (False, False)),  # a persistent target may join an exclusive
    ((False, True, True, True), (False, False)),
    ((True, False, False, False), (True, True)),
    ((True, False, False, True), (False, False)),
    ((True, False, True, False), (True, True)),
    ((True, False, True, True), (False, False)),
    ((True, True, False, False), (True, True)),
    ((True, True, False, True), (False, False)),
    ((True, True, True, False), (True, True)),
    ((True, True, True, True), (False, False)),
]


@pytest.mark.parametrize(("flags", "expected"), CROSS_GROUP)
@pytest.mark.parametrize("swap", [True, False])
def test_other_group_rule(
    flags: tuple[bool, bool, bool, bool], expected: tuple[bool, bool], swap: bool
) -> None:
    t_excl, t_pers, m_excl, m_pers = flags
    tg = GroupSpec(id="tg", members=("t",), swap=swap, exclusive=t_excl, persistent=t_pers)
    mg = GroupSpec(id="mg", members=("m",), swap=swap, exclusive=m_excl, persistent=m_pers)
    llama_swap, symmetric = expected
    assert _planner(tg, mg).evictions("t", {"m"}) == (("m",) if llama_swap else ())
    assert _planner(tg, mg, symmetric=True).evictions("t", {"m"}) == (("m",) if symmetric else ())


def test_cross_group_table_covers_every_flag_combination() -> None:
    assert sorted(f for f, _ in CROSS_GROUP) == sorted(itertools.product([False, True], repeat=4))


def test_loading_a_non_exclusive_member_keeps_a_running_exclusive_one() -> None:
    big = GroupSpec(id="big", members=("llama-70b",))
    small = GroupSpec(id="small", members=("embed", "rerank"), swap=False, exclusive=False)
    models = ["llama-70b", "embed", "rerank"]
    planner = GroupPlanner([big, small], models)
    # llama-swap: the order of loads decides whether the 70b shares the machine.
    assert planner.evictions("embed", {"llama-70b"}) == ()
    assert planner.evictions("llama-70b", {"embed", "rerank"}) == ("embed", "rerank")
    symmetric = GroupPlanner([big, small], models, symmetric=True)
    assert symmetric.evictions("embed", {"llama-70b", "rerank"}) == ("llama-70b",)
    assert symmetric.evictions("llama-70b", {"embed", "rerank"}) == ("embed", "rerank")


def test_persistent_group_is_never_evicted_by_another_group() -> None:
    resident = GroupSpec(id="resident", members=("embed",), exclusive=False, persistent=True)
    chat = GroupSpec(id="chat", members=("a", "b"))
    for symmetric in (False, True):
        planner = GroupPlanner([resident, chat], ["embed", "a", "b"], symmetric=symmetric)
        assert planner.evictions("a", {"embed", "b"}) == ("b",)
        # Ungrouped models are in (default), which is exclusive: still not the persistent one.
        planner = GroupPlanner([resident], ["embed", "x", "y"], symmetric=symmetric)
        assert planner.evictions("x", {"embed", "y"}) == ("y",)


def test_persistent_has_no_effect_inside_its_group() -> None:
    resident = GroupSpec(id="resident", members=("e1", "e2"), persistent=True)
    assert GroupPlanner([resident], ["e1", "e2"]).evictions("e1", {"e2"}) == ("e2",)


def test_no_groups_means_one_model_at_a_time() -> None:
    planner = GroupPlanner([], ["a", "b", "c"])
    assert planner.group_of("a").id == DEFAULT_GROUP
    assert planner.group_of("a") == GroupSpec(id=DEFAULT_GROUP, members=("a", "b", "c"))
    assert planner.evictions("a", {"c", "b"}) == ("b", "c")


def test_model_in_no_group_is_in_the_default_group() -> None:
    pair = GroupSpec(id="pair", members=("chat", "embed"), swap=False, exclusive=False)
    planner = GroupPlanner([pair], ["chat", "embed", "big", "other"])
    default = planner.group_of("big")
    assert (default.id, default.members, default.swap, default.exclusive, default.persistent) == (
        DEFAULT_GROUP,
        ("big", "other"),
        True,
        True,
        False,
    )
    # (default) is exclusive: the pair goes; and swap: so does the other ungrouped model.
    assert planner.evictions("big", {"chat", "embed", "other"}) == ("chat", "embed", "other")
    # The pair is neither swap nor exclusive: loading into it evicts nothing.
    assert planner.evictions("embed", {"chat", "big"}) == ()
    assert planner.group_of("chat") is pair


def test_evictions_are_sorted_and_never_contain_the_target() -> None:
    planner = GroupPlanner([], ["d", "a", "c", "b"])
    assert planner.evictions("b", {"d", "b", "a", "c"}) == ("a", "c", "d")
    assert planner.evictions("a", frozenset()) == ()


def test_unknown_running_model_counts_as_default_group() -> None:
    planner = GroupPlanner([GroupSpec(id="g", members=("a",), exclusive=False)], ["a"])
    assert planner.evictions("a", {"ghost"}) == ()
    assert GroupPlanner([], ["a"]).evictions("a", {"ghost"}) == ("ghost",)


@pytest.mark.parametrize(
    ("groups", "message"),
    [
        ([GroupSpec(id=DEFAULT_GROUP, members=("a",))], "group id '(default)' is reserved"),
        (
            [GroupSpec(id="g", members=("a",)), GroupSpec(id="g", members=("b",))],
            "group 'g' is defined twice",
        ),
        ([GroupSpec(id="g", members=("zz",))], "group 'g': 'zz' is not a model"),
        ([GroupSpec(id="g", members=("a", "a"))], "group 'g' lists 'a' twice"),
        (
            [GroupSpec(id="g", members=("a",)), GroupSpec(id="h", members=("b", "a"))],
            "model 'a' is in group 'g' and in group 'h'",
        ),
    ],
)
def test_invalid_groups_are_rejected(groups: list[GroupSpec], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        GroupPlanner(groups, ["a", "b"])


# Property: from an empty machine, any sequence of loads (each evicting what the planner says)
# keeps symmetric mode's invariant, and symmetric mode only ever adds evictions.
MODELS = ("a1", "a2", "b1", "b2", "c1")
flags = st.tuples(st.booleans(), st.booleans(), st.booleans())


def _groups(fa: tuple[bool, ...], fb: tuple[bool, ...]) -> list[GroupSpec]:
    return [
        GroupSpec(id="A", members=("a1", "a2"), swap=fa[0], exclusive=fa[1], persistent=fa[2]),
        GroupSpec(id="B", members=("b1", "b2"), swap=fb[0], exclusive=fb[1], persistent=fb[2]),
    ]


def _conflict(planner: GroupPlanner, x: str, y: str) -> bool:
    gx, gy = planner.group_of(x), planner.group_of(y)
    if gx.id == gy.id:
        return gx.swap
    return not gx.persistent and not gy.persistent and (gx.exclusive or gy.exclusive)


@settings(max_examples=300, deadline=None)
@given(fa=flags, fb=flags, loads=st.lists(st.sampled_from(MODELS), max_size=12))
def test_symmetric_invariant_holds_after_any_loads(
    fa: tuple[bool, ...], fb: tuple[bool, ...], loads: list[str]
) -> None:
    symmetric = GroupPlanner(_groups(fa, fb), MODELS, symmetric=True)
    plain = GroupPlanner(_groups(fa, fb), MODELS)
    running: set[str] = set()
    for target in loads:
        others = running - {target}
        evict = symmetric.evictions(target, others)
        assert set(plain.evictions(target, others)) <= set(evict)
        running = (others - set(evict)) | {target}
        for x, y in itertools.combinations(sorted(running), 2):
            assert not _conflict(symmetric, x, y), (running, x, y)
