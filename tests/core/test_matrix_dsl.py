"""Matrix DSL: grammar, precedence, and every problem compile_matrix reports."""

from __future__ import annotations

import pytest

from swapd.core.matrix import Matrix, MatrixError, compile_matrix
from swapd.core.matrix_dsl import (
    MAX_NESTING,
    AllOf,
    DslSyntaxError,
    Expr,
    Name,
    OneOf,
    Ref,
    Tok,
    parse,
    tokenize,
)

MODELS = ("a", "b", "c", "d", "llama-3.1-8b", "org/qwen2.5:7b")


def expand(expr: Expr) -> list[frozenset[str]]:
    """Brute force, left to right: the combinations an expression allows."""
    if isinstance(expr, Name):
        return [frozenset({expr.name})]
    if isinstance(expr, Ref):
        raise AssertionError("no refs here")
    if isinstance(expr, OneOf):
        return [combo for item in expr.items for combo in expand(item)]
    combos = [frozenset[str]()]
    for item in expr.items:
        combos = [left | right for left in combos for right in expand(item)]
    return combos


def problems_of(
    sets: dict[str, str],
    vars: dict[str, str] | None = None,
    evict_costs: dict[str, int] | None = None,
) -> tuple[tuple[str, str], ...]:
    with pytest.raises(MatrixError) as info:
        compile_matrix(sets, vars or {}, evict_costs or {}, MODELS)
    return info.value.problems


def compile_ok(sets: dict[str, str], vars: dict[str, str] | None = None) -> Matrix:
    return compile_matrix(sets, vars or {}, {}, MODELS)


# -- grammar -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "combinations"),
    [
        ("a", [{"a"}]),
        ("(a|b) & c", [{"a", "c"}, {"b", "c"}]),
        ("a & b | c", [{"a", "b"}, {"c"}]),
        ("a | b & c", [{"a"}, {"b", "c"}]),
        ("(a | b) & (c | d)", [{"a", "c"}, {"a", "d"}, {"b", "c"}, {"b", "d"}]),
        ("a & (b | c & d)", [{"a", "b"}, {"a", "c", "d"}]),
        ("((a))", [{"a"}]),
        ("a & a", [{"a"}]),
        ("  a&(b |c)\n\t", [{"a", "b"}, {"a", "c"}]),
        ("org/qwen2.5:7b & llama-3.1-8b", [{"org/qwen2.5:7b", "llama-3.1-8b"}]),
    ],
)
def test_dsl_and_binds_tighter_than_or(text: str, combinations: list[set[str]]) -> None:
    assert expand(parse(text)) == [frozenset(c) for c in combinations]


def test_dsl_parse_flattens_nested_operators_of_the_same_kind() -> None:
    assert parse("a & (b & c)") == AllOf((Name("a", 1), Name("b", 6), Name("c", 10)))
    assert parse("(a | b) | +s") == OneOf((Name("a", 2), Name("b", 6), Ref("s", 11)))


def test_dsl_ref_may_have_space_after_plus() -> None:
    assert parse("+ s & a") == AllOf((Ref("s", 1), Name("a", 7)))


def test_dsl_tokenize_positions_count_from_one() -> None:
    tokens, problems = tokenize(" a&+b")
    assert [(t.kind, t.text, t.pos) for t in tokens] == [
        (Tok.NAME, "a", 2),
        (Tok.AND, "&", 3),
        (Tok.PLUS, "+", 4),
        (Tok.NAME, "b", 5),
        (Tok.END, "", 6),
    ]
    assert problems == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a &", "syntax error at character 4: expected a model or var name, '+set' or '(',"
         " found the end of the expression"),
        ("a b", "syntax error at character 3: expected '&', '|' or the end of the expression,"
         " found 'b'"),
        ("a)", "syntax error at character 2: expected '&', '|' or the end of the expression,"
         " found ')'"),
        ("(a | b", "syntax error at character 7: expected '&', '|' or ')' to close the '(' at"
         " character 1, found the end of the expression"),
        ("| a", "syntax error at character 1: expected a model or var name, '+set' or '(',"
         " found '|'"),
        ("+(a)", "syntax error at character 2: expected a set name after '+', found '('"),
        ("a & ()", "syntax error at character 6: expected a model or var name, '+set' or '(',"
         " found ')'"),
        ("", "empty expression"),
        (" \n ", "empty expression"),
        ("a ! b", "unexpected character '!' at character 3"),
    ],
)  # fmt: skip
def test_dsl_syntax_errors_say_where_and_what_was_expected(text: str, message: str) -> None:
    with pytest.raises(DslSyntaxError) as info:
        parse(text)
    assert str(info.value) == message


def test_dsl_nesting_is_bounded() -> None:
    ok = "(" * MAX_NESTING + "a" + ")" * MAX_NESTING
    assert parse(ok) == Name("a", MAX_NESTING + 1)
    with pytest.raises(DslSyntaxError, match="nested deeper than"):
        parse("(" + ok + ")")


# -- compile: success ----------------------------------------------------------------------


def test_compile_keeps_definition_order_and_original_text() -> None:
    matrix = compile_ok({"z": " a & b ", "a": "+z | c"})
    assert matrix.set_names == ("z", "a")
    assert matrix.dsl("z") == " a & b "
    assert matrix.dsl("a") == "+z | c"
    assert matrix.models() == frozenset({"a", "b", "c"})


def test_compile_resolves_vars_and_a_var_wins_over_a_same_named_model() -> None:
    matrix = compile_ok({"s": "q & b"}, vars={"q": "org/qwen2.5:7b", "b": "llama-3.1-8b"})
    assert matrix.models() == frozenset({"org/qwen2.5:7b", "llama-3.1-8b"})
    assert matrix.can_contain_all({"org/qwen2.5:7b", "llama-3.1-8b"})


def test_compile_costs_by_var_or_model_default_one() -> None:
    matrix = compile_matrix({"s": "q & a"}, {"q": "org/qwen2.5:7b"}, {"q": 5, "b": 2}, MODELS)
    assert (matrix.cost("org/qwen2.5:7b"), matrix.cost("b"), matrix.cost("a")) == (5, 2, 1)


def test_compile_equal_inputs_give_equal_matrices() -> None:
    first = compile_ok({"s": "a & b"}, vars={"v": "c"})
    assert first == compile_ok({"s": "a & b"}, vars={"v": "c"})
    assert first != compile_ok({"s": "a & c"}, vars={"v": "c"})


# -- compile: problems ---------------------------------------------------------------------


def test_compile_requires_a_set() -> None:
    assert problems_of({}) == (("sets", "at least one set is required"),)


def test_compile_reports_the_syntax_error_of_every_set() -> None:
    assert problems_of({"one": "a &", "two": "", "three": "a # b"}) == (
        (
            "one",
            "syntax error at character 4: expected a model or var name, '+set' or '(', found"
            " the end of the expression",
        ),
        ("two", "empty expression"),
        ("three", "unexpected character '#' at character 3"),
    )


def test_compile_unknown_names_with_a_suggestion_once_per_set() -> None:
    assert problems_of({"s": "lama-3.1-8b & zzz & zzz", "t": "zzz"}) == (
        ("s", "unknown model or var 'lama-3.1-8b' at character 1 (did you mean 'llama-3.1-8b'?)"),
        ("s", "unknown model or var 'zzz' at character 15"),
        ("t", "unknown model or var 'zzz' at character 1"),
    )


def test_compile_unknown_names_are_reported_next_to_a_syntax_error() -> None:
    assert problems_of({"s": "a & (qwen |"}) == (
        (
            "s",
            "syntax error at character 12: expected a model or var name, '+set' or '(', found"
            " the end of the expression",
        ),
        ("s", "unknown model or var 'qwen' at character 6"),
    )


def test_compile_unknown_set_reference_with_a_suggestion() -> None:
    assert problems_of({"coding": "a", "s": "+codin & +other"}) == (
        ("s", "unknown set '+codin' at character 1 (did you mean '+coding'?)"),
        ("s", "unknown set '+other' at character 10"),
    )


def test_compile_a_set_name_is_not_a_model_name() -> None:
    assert problems_of({"pool": "a", "s": "pool"}) == (
        ("s", "unknown model or var 'pool' at character 1"),
    )


@pytest.mark.parametrize(
    ("sets", "problems"),
    [
        ({"s": "a | +s"}, [("s", "reference cycle: s -> s")]),
        ({"x": "+y", "y": "+x & a"}, [("x", "reference cycle: x -> y -> x")]),
        (
            {"ok": "a", "p": "+q | +ok", "q": "+r", "r": "+p & +ok"},
            [("p", "reference cycle: p -> q -> r -> p")],
        ),
        (
            {"x": "+y", "y": "+x", "u": "+u"},
            [("x", "reference cycle: x -> y -> x"), ("u", "reference cycle: u -> u")],
        ),
        # One problem per group of sets that reference each other, on its shortest cycle.
        ({"x": "+y | +x", "y": "+x"}, [("x", "reference cycle: x -> x")]),
    ],
)
def test_compile_reference_cycles_are_named(
    sets: dict[str, str], problems: list[tuple[str, str]]
) -> None:
    assert problems_of(sets) == tuple(problems)


def test_compile_a_set_may_reference_one_defined_later_and_twice() -> None:
    matrix = compile_ok({"all": "+pool & +pool", "pool": "a | b | c"})
    assert matrix.can_contain_all({"a", "b"})
    assert not matrix.can_contain_all({"a", "b", "c"})


def test_compile_var_problems() -> None:
    assert problems_of(
        {"s": "a"}, vars={"has_underscore": "a", "x" * 33: "b", "ok": "llama-3.1", "": "a"}
    ) == (
        ("vars", "var name 'has_underscore' must match ^[A-Za-z0-9.-]{1,32}$"),
        ("vars", f"var name '{'x' * 33}' must match ^[A-Za-z0-9.-]{{1,32}}$"),
        (
            "vars",
            "var 'ok' points to 'llama-3.1', which is not a model (did you mean 'llama-3.1-8b'?)",
        ),
        ("vars", "var name '' must match ^[A-Za-z0-9.-]{1,32}$"),
    )


def test_compile_evict_cost_problems() -> None:
    costs = {"lama-3.1-8b": 2, "a": 0, "b": -3, "c": True, "v": 2, "d": 4}
    assert problems_of({"s": "a"}, vars={"v": "d"}, evict_costs=costs) == (
        (
            "evict_costs",
            "'lama-3.1-8b' is neither a var nor a model (did you mean 'llama-3.1-8b'?)",
        ),
        ("evict_costs", "the cost of 'a' must be a positive integer, not 0"),
        ("evict_costs", "the cost of 'b' must be a positive integer, not -3"),
        ("evict_costs", "the cost of 'c' must be a positive integer, not True"),
        ("evict_costs", "'v' and 'd' give model 'd' different costs (2 and 4)"),
    )


def test_compile_same_cost_through_a_var_and_its_model_is_fine() -> None:
    matrix = compile_matrix({"s": "a"}, {"v": "d"}, {"v": 3, "d": 3}, MODELS)
    assert matrix.cost("d") == 3


def test_compile_lists_every_problem_at_once_one_per_line() -> None:
    with pytest.raises(MatrixError) as info:
        compile_matrix(
            {"s": "a & (b", "t": "+s & +nope & e", "u": "+u"},
            {"bad_var": "a"},
            {"zz": 1},
            MODELS,
        )
    assert str(info.value).splitlines() == [
        "s: syntax error at character 7: expected '&', '|' or ')' to close the '(' at"
        " character 5, found the end of the expression",
        "t: unknown set '+nope' at character 6",
        "t: unknown model or var 'e' at character 14",
        "u: reference cycle: u -> u",
        "vars: var name 'bad_var' must match ^[A-Za-z0-9.-]{1,32}$",
        "evict_costs: 'zz' is neither a var nor a model",
    ]
    assert isinstance(info.value, ValueError)
