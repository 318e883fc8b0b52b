"""Matrix DSL: parse the set expressions and compile them into a shared node graph.

Grammar (`&` binds tighter than `|`; whitespace is insignificant):

    expr := conj ('|' conj)*
    conj := atom ('&' atom)*
    atom := NAME | '+' NAME | '(' expr ')'

NAME is a var or a model id (`[A-Za-z0-9_.:/-]+`); a var wins over a model id of the same name.
`+name` inlines another set. Positions in messages count characters from 1.

Every problem of the whole matrix is collected before anything is compiled, so one
`MatrixError` lists them all. Names and `+set` references are checked from the tokens, which
lets a set with a syntax error still report its unknown names.
"""

from __future__ import annotations

import difflib
import re
import string
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from enum import Enum

NAME_CHARS = frozenset(string.ascii_letters + string.digits + "_.:/-")
VAR_NAME = re.compile(r"[A-Za-z0-9.-]{1,32}")
MAX_NESTING = 64
"""Parentheses deeper than this are rejected: the parser and the solver recurse per level."""


class MatrixError(ValueError):
    """Every problem of a matrix definition, as (where, message); `where` is a set name,
    "sets", "vars" or "evict_costs"."""

    def __init__(self, problems: Iterable[tuple[str, str]]) -> None:
        self.problems: tuple[tuple[str, str], ...] = tuple(problems)
        super().__init__("\n".join(f"{where}: {message}" for where, message in self.problems))


# -- tokens and syntax tree ----------------------------------------------------------------


class Tok(Enum):
    NAME = "a name"
    PLUS = "'+'"
    AND = "'&'"
    OR = "'|'"
    OPEN = "'('"
    CLOSE = "')'"
    END = "the end of the expression"


_SYMBOLS = {"+": Tok.PLUS, "&": Tok.AND, "|": Tok.OR, "(": Tok.OPEN, ")": Tok.CLOSE}
_LEXEME = re.compile(r"\s+|[A-Za-z0-9_.:/-]+|.", re.DOTALL)


@dataclass(frozen=True, slots=True)
class Token:
    kind: Tok
    text: str
    pos: int

    def describe(self) -> str:
        return f"'{self.text}'" if self.kind is Tok.NAME else self.kind.value


@dataclass(frozen=True, slots=True)
class Name:
    name: str
    pos: int


@dataclass(frozen=True, slots=True)
class Ref:
    set_name: str
    pos: int


@dataclass(frozen=True, slots=True)
class AllOf:
    items: tuple[Expr, ...]


@dataclass(frozen=True, slots=True)
class OneOf:
    items: tuple[Expr, ...]


Expr = Name | Ref | AllOf | OneOf


class DslSyntaxError(ValueError):
    pass


def tokenize(text: str) -> tuple[list[Token], list[str]]:
    """The tokens (ending with END) and one problem per character that fits no token."""
    tokens: list[Token] = []
    problems: list[str] = []
    for match in _LEXEME.finditer(text):
        lexeme, pos = match.group(), match.start() + 1
        if lexeme in _SYMBOLS:
            tokens.append(Token(_SYMBOLS[lexeme], lexeme, pos))
        elif lexeme[0] in NAME_CHARS:
            tokens.append(Token(Tok.NAME, lexeme, pos))
        elif not lexeme.isspace():  # whitespace is insignificant
            problems.append(f"unexpected character {lexeme!r} at character {pos}")
    tokens.append(Token(Tok.END, "", len(text) + 1))
    return tokens, problems


def parse(text: str) -> Expr:
    """The syntax tree of one expression; raises DslSyntaxError with the first problem."""
    tokens, problems = tokenize(text)
    if problems:
        raise DslSyntaxError(problems[0])
    return _Parser(tokens).parse()


class _Parser:
    def __init__(self, tokens: list[Token]) -> None:
        self._tokens = tokens
        self._next = 0
        self._depth = 0

    def parse(self) -> Expr:
        if self._peek().kind is Tok.END:
            raise DslSyntaxError("empty expression")
        expr = self._alternatives()
        self._expect(Tok.END, "'&', '|' or the end of the expression")
        return expr

    def _alternatives(self) -> Expr:
        items = [self._conjunction()]
        while self._peek().kind is Tok.OR:
            self._advance()
            items.append(self._conjunction())
        return _flatten(OneOf, items)

    def _conjunction(self) -> Expr:
        items = [self._atom()]
        while self._peek().kind is Tok.AND:
            self._advance()
            items.append(self._atom())
        return _flatten(AllOf, items)

    def _atom(self) -> Expr:
        token = self._advance()
        if token.kind is Tok.NAME:
            return Name(token.text, token.pos)
        if token.kind is Tok.PLUS:
            name = self._expect(Tok.NAME, "a set name after '+'")
            return Ref(name.text, token.pos)
        if token.kind is Tok.OPEN:
            return self._group(token)
        raise _unexpected(token, "a model or var name, '+set' or '('")

    def _group(self, opening: Token) -> Expr:
        self._depth += 1
        if self._depth > MAX_NESTING:
            raise DslSyntaxError(
                f"parentheses nested deeper than {MAX_NESTING} levels at character {opening.pos}"
            )
        expr = self._alternatives()
        self._expect(Tok.CLOSE, f"'&', '|' or ')' to close the '(' at character {opening.pos}")
        self._depth -= 1
        return expr

    def _peek(self) -> Token:
        return self._tokens[self._next]

    def _advance(self) -> Token:
        token = self._tokens[self._next]
        if token.kind is not Tok.END:
            self._next += 1
        return token

    def _expect(self, kind: Tok, expected: str) -> Token:
        token = self._advance()
        if token.kind is not kind:
            raise _unexpected(token, expected)
        return token


def _unexpected(token: Token, expected: str) -> DslSyntaxError:
    return DslSyntaxError(
        f"syntax error at character {token.pos}: expected {expected}, found {token.describe()}"
    )


def _flatten(kind: type[AllOf] | type[OneOf], items: list[Expr]) -> Expr:
    if len(items) == 1:
        return items[0]
    flat: list[Expr] = []
    for item in items:
        flat.extend(item.items if isinstance(item, kind) else (item,))
    return kind(tuple(flat))


# -- compiled graph ------------------------------------------------------------------------


class Op(Enum):
    LEAF = "leaf"
    ALL = "&"
    ANY = "|"


@dataclass(frozen=True, slots=True, eq=False)
class Node:
    """A compiled expression. Identity matters: a referenced set is one shared node, which the
    solver memoizes once per query."""

    op: Op
    children: tuple[Node, ...]
    model: str
    """The model id of a leaf; empty otherwise."""
    support: int
    """One bit per model that appears anywhere below."""


@dataclass(frozen=True, slots=True, eq=False)
class Program:
    roots: tuple[Node, ...]
    """Per set, in definition order."""
    bits: Mapping[str, int]
    """Model id -> its bit, for every model some set mentions."""
    costs: Mapping[str, int]
    """Model id -> evict cost, for those given one."""


def compile_program(
    sets: Mapping[str, str],
    vars: Mapping[str, str],
    evict_costs: Mapping[str, int],
    models: Collection[str],
) -> Program:
    """Check everything, then compile; raises MatrixError with every problem found."""
    checker = _Checker(sets, vars, models)
    exprs = checker.check_sets()
    checker.check_cycles()
    checker.check_vars()
    costs = checker.check_costs(evict_costs)
    if checker.problems:
        raise MatrixError(checker.problems)
    return _Compiler(exprs, checker.resolve).program(sets, costs)


class _Checker:
    def __init__(
        self, sets: Mapping[str, str], vars: Mapping[str, str], models: Collection[str]
    ) -> None:
        self.sets = sets
        self.vars = vars
        self.models = frozenset(models)
        self.problems: list[tuple[str, str]] = []
        self.refs: dict[str, list[str]] = {}

    def resolve(self, name: str) -> str | None:
        if name in self.vars:
            return self.vars[name]
        return name if name in self.models else None

    def check_sets(self) -> dict[str, Expr]:
        if not self.sets:
            self.problems.append(("sets", "at least one set is required"))
        exprs: dict[str, Expr] = {}
        for set_name, text in self.sets.items():
            tokens, bad_chars = tokenize(text)
            self.problems.extend((set_name, p) for p in bad_chars)
            if not bad_chars:
                try:
                    exprs[set_name] = _Parser(tokens).parse()
                except DslSyntaxError as exc:
                    self.problems.append((set_name, str(exc)))
            self._check_names(set_name, tokens)
        return exprs

    def _check_names(self, set_name: str, tokens: list[Token]) -> None:
        refs: list[str] = []
        reported: set[tuple[bool, str]] = set()
        for i, token in enumerate(tokens):
            if token.kind is not Tok.NAME:
                continue
            plus = tokens[i - 1] if i > 0 and tokens[i - 1].kind is Tok.PLUS else None
            if plus is not None and token.text in self.sets:
                refs.append(token.text)
            elif plus is None and self.resolve(token.text) is not None:
                continue
            elif (plus is not None, token.text) not in reported:
                reported.add((plus is not None, token.text))
                problem = (
                    self._unknown_name(token) if plus is None else self._unknown_set(plus, token)
                )
                self.problems.append((set_name, problem))
        self.refs[set_name] = list(dict.fromkeys(refs))

    def _unknown_set(self, plus: Token, name: Token) -> str:
        hint = _did_you_mean(name.text, self.sets, prefix="+")
        return f"unknown set '+{name.text}' at character {plus.pos}{hint}"

    def _unknown_name(self, name: Token) -> str:
        hint = _did_you_mean(name.text, [*self.vars, *self.models])
        return f"unknown model or var '{name.text}' at character {name.pos}{hint}"

    def check_cycles(self) -> None:
        reach = {name: _reachable(name, self.refs) for name in self.sets}
        in_reported_cycle: set[str] = set()
        for name in self.sets:
            if name in reach[name] and name not in in_reported_cycle:
                members = {other for other in reach[name] if name in reach[other]}
                in_reported_cycle |= members
                cycle = " -> ".join(_shortest_cycle(name, self.refs, members))
                self.problems.append((name, f"reference cycle: {cycle}"))

    def check_vars(self) -> None:
        for alias, target in self.vars.items():
            if not VAR_NAME.fullmatch(alias):
                self.problems.append(
                    ("vars", f"var name '{alias}' must match ^{VAR_NAME.pattern}$")
                )
            if target not in self.models:
                hint = _did_you_mean(target, self.models)
                self.problems.append(
                    ("vars", f"var '{alias}' points to '{target}', which is not a model{hint}")
                )

    def check_costs(self, evict_costs: Mapping[str, int]) -> dict[str, int]:
        costs: dict[str, int] = {}
        given_by: dict[str, str] = {}
        for key, cost in evict_costs.items():
            model = self.resolve(key)
            if model is None:
                hint = _did_you_mean(key, [*self.vars, *self.models])
                self.problems.append(("evict_costs", f"'{key}' is neither a var nor a model{hint}"))
            elif type(cost) is not int or cost < 1:
                self.problems.append(
                    ("evict_costs", f"the cost of '{key}' must be a positive integer, not {cost!r}")
                )
            elif model in costs and costs[model] != cost:
                self.problems.append(
                    (
                        "evict_costs",
                        f"'{given_by[model]}' and '{key}' give model '{model}' different costs"
                        f" ({costs[model]} and {cost})",
                    )
                )
            else:
                costs[model] = cost
                given_by[model] = key
        return costs


def _did_you_mean(name: str, candidates: Iterable[str], prefix: str = "") -> str:
    close = difflib.get_close_matches(name, list(candidates), n=1)
    return f" (did you mean '{prefix}{close[0]}'?)" if close else ""


def _reachable(start: str, refs: Mapping[str, list[str]]) -> set[str]:
    """Sets reachable from `start` through one or more references."""
    seen: set[str] = set()
    stack = list(refs.get(start, ()))
    while stack:
        name = stack.pop()
        if name not in seen:
            seen.add(name)
            stack.extend(refs.get(name, ()))
    return seen


def _shortest_cycle(start: str, refs: Mapping[str, list[str]], members: set[str]) -> list[str]:
    parents: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following: list[str] = []
        for name in frontier:
            for target in refs[name]:
                if target == start:
                    path = [name]
                    while path[-1] != start:
                        path.append(parents[path[-1]])
                    return [*reversed(path), start]
                if target in members and target not in parents:
                    parents[target] = name
                    following.append(target)
        frontier = following
    raise AssertionError(f"{start} is on no cycle")


class _Compiler:
    def __init__(self, exprs: Mapping[str, Expr], resolve: Callable[[str], str | None]) -> None:
        self._exprs = exprs
        self._resolve = resolve
        self._roots: dict[str, Node] = {}
        self._leaves: dict[str, Node] = {}

    def program(self, sets: Mapping[str, str], costs: Mapping[str, int]) -> Program:
        for name in sets:
            self._root(name)
        bits = {model: leaf.support.bit_length() - 1 for model, leaf in self._leaves.items()}
        return Program(tuple(self._roots[name] for name in sets), bits, costs)

    def _root(self, set_name: str) -> Node:
        if set_name not in self._roots:
            self._roots[set_name] = self._node(self._exprs[set_name])
        return self._roots[set_name]

    def _node(self, expr: Expr) -> Node:
        if isinstance(expr, Name):
            return self._leaf(self._model(expr.name))
        if isinstance(expr, Ref):
            return self._root(expr.set_name)
        children = tuple(self._node(item) for item in expr.items)
        support = 0
        for child in children:
            support |= child.support
        return Node(Op.ALL if isinstance(expr, AllOf) else Op.ANY, children, "", support)

    def _model(self, name: str) -> str:
        model = self._resolve(name)
        assert model is not None, name
        return model

    def _leaf(self, model: str) -> Node:
        if model not in self._leaves:
            self._leaves[model] = Node(Op.LEAF, (), model, 1 << len(self._leaves))
        return self._leaves[model]
