"""`routing`, and llama-swap's legacy top-level `groups`/`matrix`: every form, default, error."""

from __future__ import annotations

import textwrap

import pytest

from swapd.config.model import Routing
from swapd.core.fifo import DEFAULT_MAX_WAIT_S
from swapd.core.groups import GroupSpec
from swapd.core.matrix import compile_matrix
from tests.config.helpers import load, problems

MODELS = """
models:
  chat:
    cmd: server --port ${PORT}
    aliases: [gpt]
  embed:
    cmd: server --port ${PORT}
  big:
    cmd: server --port ${PORT}
"""
MODEL_IDS = ("chat", "embed", "big")


def _with_models(text: str) -> str:
    return textwrap.dedent(text) + MODELS


def _indent(text: str, by: int) -> str:
    return textwrap.indent(text, " " * by)


def _routing(text: str) -> Routing:
    config = load(_with_models(text))
    assert config.warnings == ()
    return config.routing


def _warnings(text: str) -> tuple[str, ...]:
    return load(_with_models(text)).warnings


def _problems(text: str) -> list[str]:
    return problems(_with_models(text))


# -- defaults ------------------------------------------------------------------------------


def test_no_routing_means_one_model_at_a_time_and_fifo() -> None:
    routing = _routing("")
    assert routing == Routing()
    assert (routing.planner, routing.groups, routing.symmetric_exclusive, routing.matrix) == (
        "group",
        (),
        False,
        None,
    )
    assert (routing.scheduler, dict(routing.priority), routing.max_wait_s) == (
        "fifo",
        {},
        DEFAULT_MAX_WAIT_S,
    )
    assert DEFAULT_MAX_WAIT_S == 30.0


@pytest.mark.parametrize(
    "text",
    [
        "routing: {}\n",
        "routing:\n",
        "routing:\n  router:\n  scheduler:\n",
        "routing:\n  router:\n    settings:\n      groups:\n",
        "routing:\n  scheduler:\n    settings:\n      fifo:\n        priority:\n",
        "groups: {}\n",
    ],
)
def test_empty_or_null_routing_keys_mean_the_defaults(text: str) -> None:
    assert _routing(text) == Routing()


def test_group_flags_default_to_swap_exclusive_not_persistent() -> None:
    routing = _routing(
        """
        routing:
          router:
            settings:
              groups:
                g:
                  members: [chat]
                  swap:
        """
    )
    assert routing.groups == (GroupSpec(id="g", members=("chat",)),)


# -- groups ----------------------------------------------------------------------------------

GROUPS = """\
pair:
  members: [chat, embed]
  swap: false
  exclusive: false
solo:
  members: [big]
  persistent: true
"""
EXPECTED_GROUPS = (
    GroupSpec(id="pair", members=("chat", "embed"), swap=False, exclusive=False),
    GroupSpec(id="solo", members=("big",), swap=True, exclusive=True, persistent=True),
)


@pytest.mark.parametrize("use", ["", "    use: group\n"])
def test_groups_under_routing_router_settings(use: str) -> None:
    text = "routing:\n  router:\n" + use + "    settings:\n      groups:\n" + _indent(GROUPS, 8)
    routing = _routing(text)
    assert routing.planner == "group"
    assert routing.groups == EXPECTED_GROUPS
    assert routing.matrix is None


def test_legacy_top_level_groups_are_the_same_thing() -> None:
    routing = _routing("groups:\n" + _indent(GROUPS, 2))
    assert routing.planner == "group"
    assert routing.groups == EXPECTED_GROUPS


def test_symmetric_exclusive_is_read_and_allowed_beside_legacy_groups() -> None:
    routing = _routing(
        """
        groups:
          pair: {members: [chat, embed], exclusive: false}
        routing:
          router:
            settings:
              symmetricExclusive: true
          scheduler:
            use: serial
        """
    )
    assert routing.symmetric_exclusive is True
    assert routing.groups == (GroupSpec(id="pair", members=("chat", "embed"), exclusive=False),)
    assert routing.scheduler == "serial"


# -- matrix ----------------------------------------------------------------------------------

MATRIX = """\
vars: {c: chat, e: embed}
evict_costs: {big: 5}
sets:
  pair: c & e
  alone: big
"""


def _expected_matrix() -> object:
    return compile_matrix(
        {"pair": "c & e", "alone": "big"}, {"c": "chat", "e": "embed"}, {"big": 5}, MODEL_IDS
    )


def test_matrix_under_routing_router_settings() -> None:
    text = "routing:\n  router:\n    use: matrix\n    settings:\n      matrix:\n"
    routing = _routing(text + _indent(MATRIX, 8))
    assert routing.planner == "matrix"
    assert routing.matrix == _expected_matrix()
    assert routing.matrix is not None
    assert routing.matrix.set_names == ("pair", "alone")
    assert routing.matrix.cost("big") == 5
    assert routing.groups == ()


def test_legacy_top_level_matrix() -> None:
    routing = _routing("matrix:\n" + _indent(MATRIX, 2))
    assert routing.planner == "matrix"
    assert routing.matrix == _expected_matrix()


def test_matrix_without_use_is_used_with_a_warning() -> None:
    config = load(
        _with_models(
            """
            routing:
              router:
                settings:
                  matrix:
                    sets: {s: chat & embed}
            """
        )
    )
    assert config.routing.planner == "matrix"
    assert config.routing.matrix is not None
    assert config.warnings == (
        "routing.router.settings.matrix (line 5): routing.router.use is not set, so swapd uses "
        "this matrix, the only policy defined (llama-swap would ignore it); set use: matrix to "
        "say so",
    )


@pytest.mark.parametrize(
    ("use", "planner", "warning"),
    [
        (
            "",
            "group",
            "routing.router.settings.matrix (line 7): not used, because routing.router.use "
            "defaults to 'group'; ignored",
        ),
        (
            "use: group",
            "group",
            "routing.router.settings.matrix (line 7): not used, because routing.router.use is "
            "'group'; ignored",
        ),
        (
            "use: matrix",
            "matrix",
            "routing.router.settings.groups (line 6): not used, because routing.router.use is "
            "'matrix'; ignored",
        ),
    ],
)
def test_both_definitions_under_settings_use_picks_one_and_warns(
    use: str, planner: str, warning: str
) -> None:
    config = load(
        _with_models(
            f"""
            routing:
              router:
                {use}
                settings:
                  groups: {{g: {{members: [chat]}}}}
                  matrix:
                    sets: {{s: chat & embed}}
            """
        )
    )
    assert config.routing.planner == planner
    assert (config.routing.matrix is not None) == (planner == "matrix")
    assert config.routing.groups == (
        (GroupSpec(id="g", members=("chat",)),) if planner == "group" else ()
    )
    assert config.warnings == (warning,)


def test_use_group_with_only_a_matrix_ignores_it_with_a_warning() -> None:
    config = load(
        _with_models(
            """
            routing:
              router:
                use: group
                settings:
                  matrix: {sets: {s: chat & embed}}
            """
        )
    )
    assert config.routing == Routing()
    assert config.warnings == (
        "routing.router.settings.matrix (line 6): not used, because routing.router.use is "
        "'group'; ignored",
    )


def test_symmetric_exclusive_with_the_matrix_has_no_effect() -> None:
    warnings = _warnings(
        """
        routing:
          router:
            use: matrix
            settings:
              symmetricExclusive: true
              matrix: {sets: {s: chat & embed}}
        """
    )
    assert warnings == (
        "routing.router.settings.symmetricExclusive (line 6): has no effect with the matrix "
        "router; ignored",
    )


# -- scheduler -----------------------------------------------------------------------------


def test_scheduler_settings_priority_by_id_or_alias_and_max_wait() -> None:
    routing = _routing(
        """
        routing:
          scheduler:
            use: fifo
            settings:
              fifo:
                priority: {gpt: 10, big: -1}
                maxWait: 2.5
        """
    )
    assert routing.scheduler == "fifo"
    assert dict(routing.priority) == {"chat": 10, "big": -1}
    assert routing.max_wait_s == 2.5
    assert _routing("routing: {scheduler: {settings: {fifo: {maxWait: 7}}}}\n").max_wait_s == 7.0


# -- errors: legacy keys -------------------------------------------------------------------


@pytest.mark.parametrize(
    "router",
    [
        "    use: group\n",
        "    settings:\n      groups: {g: {members: [embed]}}\n",
        "    settings:\n      matrix: {sets: {s: embed}}\n",
    ],
)
@pytest.mark.parametrize("legacy", ["groups", "matrix"])
def test_legacy_keys_beside_a_routing_router_block_are_an_error(legacy: str, router: str) -> None:
    body = "{g: {members: [chat]}}" if legacy == "groups" else "{sets: {s: chat}}"
    found = _problems(f"{legacy}: {body}\nrouting:\n  router:\n{router}")
    assert found == [
        f"{legacy} (line 1): the legacy top-level '{legacy}' cannot be used together with a "
        f"routing.router block (line 3): move it to routing.router.settings.{legacy}"
    ]


def test_legacy_groups_and_matrix_together_are_an_error() -> None:
    found = _problems(
        """
        groups:
          g: {members: [chat]}
        matrix:
          sets: {s: chat}
        """
    )
    assert found == ["matrix (line 4): set either groups or matrix, not both"]


def test_both_legacy_keys_are_still_checked() -> None:
    found = _problems(
        """
        groups:
          g: {members: [chta]}
        matrix:
          sets: {s: embd}
        """
    )
    assert found == [
        "groups.g.members[0] (line 3): unknown model 'chta' (did you mean 'chat'?)",
        "matrix (line 4): set either groups or matrix, not both",
        "matrix.sets.s (line 5): unknown model or var 'embd' at character 1 (did you mean "
        "'embed'?)",
    ]


# -- errors: router ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "hint"),
    [
        ("", ""),
        (
            "    settings:\n      groups: {g: {members: [chat]}}\n",
            " (groups are defined: did you mean use: group?)",
        ),
    ],
)
def test_use_matrix_without_a_matrix_is_an_error(settings: str, hint: str) -> None:
    found = _problems("routing:\n  router:\n    use: matrix\n" + settings)
    assert found == [
        "routing.router.use (line 3): is 'matrix', but routing.router.settings.matrix is not "
        f"set{hint}"
    ]


def test_unknown_router_and_scheduler_names() -> None:
    found = _problems(
        """
        routing:
          router:
            use: matrx
          scheduler:
            use: lifo
          schedular: {}
        """
    )
    assert found == [
        'routing.router.use (line 4): "matrx" is not one of "group", "matrix"',
        'routing.scheduler.use (line 6): "lifo" is not one of "fifo", "serial"',
        "routing (line 7): unknown key 'schedular' (did you mean 'scheduler'?)",
    ]


# -- errors: groups ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prefix", "base"),
    [
        ("routing:\n  router:\n    settings:\n      groups:\n", "routing.router.settings.groups"),
        ("groups:\n", "groups"),
    ],
)
def test_group_member_errors(prefix: str, base: str) -> None:
    body = (
        "g: {members: [chta, gpt, embed, embed]}\n"
        "h: {members: [embed, big]}\n"
        "(default): {members: [big]}\n"
    )
    depth = prefix.count("\n")
    first = depth + 1
    assert _problems(prefix + _indent(body, 2 * depth)) == [
        f"{base}.g.members[0] (line {first}): unknown model 'chta' (did you mean 'chat'?)",
        f"{base}.g.members[1] (line {first}): 'gpt' is an alias of model 'chat'; "
        "groups list model ids",
        f"{base}.g.members[3] (line {first}): model 'embed' is listed twice",
        f"{base}.h.members[0] (line {first + 1}): model 'embed' is already in group 'g'; "
        "a model may be in one group only",
        f"{base}.(default) (line {first + 2}): the group id '(default)' is reserved for the "
        "models in no group",
    ]


def test_group_schema_errors() -> None:
    found = _problems(
        """
        routing:
          router:
            settings:
              groups:
                g: {members: [chat], exclusve: false, swap: "yes"}
                h: {swap: false}
                i: [big]
        """
    )
    assert found == [
        "routing.router.settings.groups.g (line 6): unknown key 'exclusve' (did you mean "
        "'exclusive'?)",
        'routing.router.settings.groups.g.swap (line 6): expected a boolean, got a string ("yes")',
        "routing.router.settings.groups.h (line 7): missing required key 'members'",
        "routing.router.settings.groups.i (line 8): expected a mapping, got a list",
    ]


def test_group_of_a_broken_model_is_not_reported_again() -> None:
    found = problems(
        """
        models:
          a:
            ttl: 5
        groups:
          g: {members: [a]}
        """
    )
    assert found == ["models.a (line 3): missing required key 'cmd'"]


# -- errors: matrix ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prefix", "base"),
    [
        (
            "routing:\n  router:\n    use: matrix\n    settings:\n      matrix:\n",
            "routing.router.settings.matrix",
        ),
        ("matrix:\n", "matrix"),
    ],
)
def test_matrix_problems_land_at_their_key(prefix: str, base: str) -> None:
    depth = prefix.count("\n")
    body = (
        "vars: {c: chat, e: embd}\n"
        "evict_costs: {c: 2, zz: 3}\n"
        "sets:\n"
        '  a: "c & embd"\n'
        '  b: "+a | +cc"\n'
        '  x: "+y"\n'
        '  y: "+x"\n'
        '  z: "chat & (embed"\n'
    )
    found = _problems(prefix + _indent(body, 2 * depth))
    line = depth + 1
    assert found == [
        f"{base}.vars (line {line}): var 'e' points to 'embd', which is not a model "
        "(did you mean 'embed'?)",
        f"{base}.evict_costs (line {line + 1}): 'zz' is neither a var nor a model",
        f"{base}.sets.a (line {line + 3}): unknown model or var 'embd' at character 5 "
        "(did you mean 'embed'?)",
        f"{base}.sets.b (line {line + 4}): unknown set '+cc' at character 6",
        f"{base}.sets.x (line {line + 5}): reference cycle: x -> y -> x",
        f"{base}.sets.z (line {line + 7}): syntax error at character 14: expected '&', '|' or "
        "')' to close the '(' at character 8, found the end of the expression",
    ]


def test_matrix_schema_errors_are_reported_and_compiling_waits_for_them() -> None:
    found = _problems(
        """
        matrix:
          vars: {"c_1": chat}
          evict_costs: {chat: 0}
          sets: {}
        """
    )
    assert found == [
        "matrix.vars (line 3): invalid name 'c_1': use 1 to 32 letters, digits, '.' and '-'",
        "matrix.evict_costs.chat (line 4): must be at least 1, got 0",
        "matrix.sets (line 5): must not be empty",
    ]
    assert _problems("matrix:\n  vars: {c: nope}\n") == [
        "matrix (line 1): missing required key 'sets'"
    ]


# -- errors: scheduler ---------------------------------------------------------------------


def test_priority_and_max_wait_errors() -> None:
    found = _problems(
        """
        routing:
          scheduler:
            settings:
              fifo:
                priority:
                  chta: 1
                  gpt: 2
                  chat: 3
                  big: high
                maxWait: 0
        """
    )
    assert found == [
        "routing.scheduler.settings.fifo.priority.chta (line 7): unknown model 'chta' "
        "(did you mean 'chat'?)",
        "routing.scheduler.settings.fifo.priority.chat (line 9): 'chat' and 'gpt' both name "
        "model 'chat'; give its priority once",
        "routing.scheduler.settings.fifo.priority.big (line 10): expected an integer, got a "
        'string ("high")',
        "routing.scheduler.settings.fifo.maxWait (line 11): must be greater than 0, got 0",
    ]


@pytest.mark.parametrize("value", ["-1", "true", "soon"])
def test_max_wait_must_be_a_positive_number(value: str) -> None:
    found = _problems(f"routing: {{scheduler: {{settings: {{fifo: {{maxWait: {value}}}}}}}}}\n")
    assert len(found) == 1
    assert found[0].startswith("routing.scheduler.settings.fifo.maxWait (line 1): ")


def test_routing_keys_are_no_longer_reported_as_ignored() -> None:
    config = load(_with_models("groups: {g: {members: [chat]}}\nprofiles: {}\n"))
    assert config.warnings == (
        "profiles (line 2): llama-swap setting not implemented by swapd yet; ignored",
    )
