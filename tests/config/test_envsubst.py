"""`${env.VAR}`: substituted on the text before YAML parsing, comments left alone."""

from __future__ import annotations

import pytest

from swapd.config.envsubst import substitute_env
from tests.config.helpers import load, problems


def test_env_substitutes_values_before_yaml_typing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SWAPD_T_PORT", "7000")
    monkeypatch.setenv("SWAPD_T_BIN", "/opt/llama-server")
    config = load(
        """
        startPort: ${env.SWAPD_T_PORT}
        models:
          a:
            cmd: ${env.SWAPD_T_BIN} --port ${PORT}
        """
    )
    assert config.start_port == 7000
    assert config.models["a"].argv == ("/opt/llama-server", "--port", "7000")


def test_env_unset_variable_is_a_problem_with_key_path_and_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("SWAPD_T_UNSET", raising=False)
    found = problems(
        """
        models:
          a:
            cmd: |
              llama-server --port ${PORT}
              -m ${env.SWAPD_T_UNSET}/m.gguf
        """
    )
    assert found == ["models.a.cmd (line 6): environment variable 'SWAPD_T_UNSET' is not set"]


def test_env_references_in_comments_are_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SWAPD_T_UNSET", raising=False)
    config = load(
        """
        # a full-line comment: ${env.SWAPD_T_UNSET}
        startPort: 6000  # trailing comment: ${env.SWAPD_T_UNSET}
        models:
          a:
            cmd: |
              llama-server --port ${PORT}
              # commented-out cmd line: -m ${env.SWAPD_T_UNSET}
        """
    )
    assert config.models["a"].argv == ("llama-server", "--port", "6000")


def test_env_hash_inside_quotes_is_not_a_comment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SWAPD_T_UNSET", raising=False)
    found = problems(
        """
        models:
          a:
            cmd: "llama-server --port ${PORT} #${env.SWAPD_T_UNSET}"
        """
    )
    assert found == ["models.a.cmd (line 4): environment variable 'SWAPD_T_UNSET' is not set"]


@pytest.mark.parametrize("bad", ["two\nlines", "carriage\rreturn", "nul\0byte"])
def test_env_value_with_newline_cr_or_nul_is_a_problem(
    monkeypatch: pytest.MonkeyPatch, bad: str
) -> None:
    environ = {"SWAPD_T_BAD": bad}
    text, found = substitute_env("x: 1\ncmd: ${env.SWAPD_T_BAD}\n", environ)
    assert [(p.line, "SWAPD_T_BAD" in p.message) for p in found] == [(2, True)]
    assert "${env.SWAPD_T_BAD}" in text


def test_env_backslash_and_quote_are_escaped_for_double_quoted_yaml(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SWAPD_T_QUOTED", 'say "hi" \\o/')
    config = load(
        """
        models:
          a:
            cmd: llama-server --port ${PORT}
            description: "${env.SWAPD_T_QUOTED}"
        """
    )
    assert config.models["a"].description == 'say "hi" \\o/'


def test_env_every_unset_variable_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SWAPD_T_ONE", raising=False)
    monkeypatch.delenv("SWAPD_T_TWO", raising=False)
    found = problems(
        """
        apiKeys: ["${env.SWAPD_T_ONE}"]
        models:
          a:
            cmd: llama-server --port ${PORT} --api-key ${env.SWAPD_T_TWO}
        """
    )
    assert found == [
        "apiKeys[0] (line 2): environment variable 'SWAPD_T_ONE' is not set",
        "models.a.cmd (line 5): environment variable 'SWAPD_T_TWO' is not set",
    ]


def test_env_substitution_keeps_line_numbers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SWAPD_T_BIN", "/bin/server")
    found = problems(
        """
        models:
          a:
            cmd: ${env.SWAPD_T_BIN} --port ${PORT}
            ttl: -7
        """
    )
    assert found == ["models.a.ttl (line 5): must be at least -1, got -7"]


def test_env_hash_in_block_scalar_content_is_not_a_comment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SWAPD_T_SET", "value")
    monkeypatch.delenv("SWAPD_T_UNSET_TOO", raising=False)
    config = load(
        """
        models:
          a:
            cmd: |  # header comment ${env.SWAPD_T_UNSET_TOO}
              server --port ${PORT} #${env.SWAPD_T_SET}
            description: it's plain # ${env.SWAPD_T_UNSET_TOO}
            name: 'it''s quoted # ${env.SWAPD_T_SET}' # ${env.SWAPD_T_UNSET_TOO}
        """
    )
    model = config.models["a"]
    assert model.argv == ("server", "--port", "5800", "#value")
    assert model.description == "it's plain"
    assert model.name == "it's quoted # value"
