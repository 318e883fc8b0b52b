"""Per-model keys: what lands in ModelSpec."""

from __future__ import annotations

import pytest

from swapd.config.command import CommandError, split_command, strip_comment_lines
from tests.config.helpers import load, problems


def test_cmd_comment_lines_continuations_and_shell_quoting() -> None:
    config = load(
        """
        models:
          a:
            cmd: |
              /opt/server --port ${PORT} \\
                -m "/models/my model.gguf"
              # --disabled-flag
                # --indented-disabled-flag
              --chat-template 'a "quoted" template'
              --threads=4
        """
    )
    model = config.models["a"]
    assert model.argv == (
        "/opt/server",
        *("--port", "5800", "-m", "/models/my model.gguf"),
        *("--chat-template", 'a "quoted" template', "--threads=4"),
    )
    assert "disabled" not in model.cmd
    assert model.cmd.startswith('/opt/server --port 5800 -m "/models/my model.gguf"')


def test_cmd_is_never_given_to_a_shell() -> None:
    config = load('models:\n  a:\n    cmd: "server --port ${PORT} | tee $HOME/log *.gguf"\n')
    assert config.models["a"].argv[-4:] == ("|", "tee", "$HOME/log", "*.gguf")


def test_cmd_empty_or_unsplittable_is_a_problem() -> None:
    found = problems(
        """
        models:
          only-comments:
            cmd: |
              # server --port ${PORT}
            proxy: http://127.0.0.1:1234
          blank:
            cmd: ""
            proxy: http://127.0.0.1:1235
          unclosed:
            cmd: server --port ${PORT} --name "oops
        """
    )
    assert found == [
        "models.only-comments.cmd (line 4): the command is empty",
        "models.blank.cmd (line 8): the command is empty",
        "models.unclosed.cmd (line 11): cannot split into arguments: No closing quotation",
    ]


def test_command_helpers() -> None:
    assert strip_comment_lines("a\n  # b\nc # not a comment line") == "a\nc # not a comment line"
    assert split_command("a \\\n  b\nc") == ("a b c", ("a", "b", "c"))
    with pytest.raises(CommandError):
        split_command("   \n ")


def test_cmd_stop_keeps_pid_literally_and_drops_comment_lines() -> None:
    config = load(
        """
        models:
          a:
            cmd: server --port ${PORT}
            cmdStop: |
              # polite first
              kill -INT ${PID}
          b:
            cmd: server --port ${PORT}
            cmdStop: ""
        """
    )
    assert config.models["a"].stop_argv == ("kill", "-INT", "${PID}")
    assert config.models["b"].stop_argv is None


def test_check_endpoint_none_path_and_missing_slash() -> None:
    config = load(
        """
        models:
          a:
            cmd: server --port ${PORT}
            checkEndpoint: none
          b:
            cmd: server --port ${PORT}
            checkEndpoint: /v1/models
          c:
            cmd: server --port ${PORT}
            checkEndpoint: ready
        """
    )
    assert config.models["a"].check_endpoint is None
    assert config.models["b"].check_endpoint == "/v1/models"
    assert config.models["c"].check_endpoint == "/ready"


def test_proxy_is_stored_without_trailing_slash_and_must_be_http() -> None:
    config = load(
        """
        models:
          a:
            cmd: server --port 8080
            proxy: http://10.0.0.2:8080/
        """
    )
    assert config.models["a"].proxy == "http://10.0.0.2:8080"
    found = problems("models:\n  a:\n    cmd: server\n    proxy: localhost:8080\n")
    assert found == [
        "models.a.proxy (line 4): expected an http:// or https:// URL, got 'localhost:8080'"
    ]


def test_proxy_of_the_wrong_type_is_one_problem() -> None:
    found = problems("models:\n  a:\n    cmd: server\n    proxy: 12\n")
    assert found == ["models.a.proxy (line 4): expected a string, got an integer (12)"]


def test_ttl_and_unload_timeout_fall_back_to_globals() -> None:
    config = load(
        """
        globalTTL: 300
        unloadTimeout: 20
        models:
          unset:
            cmd: server --port ${PORT}
          minus-one:
            cmd: server --port ${PORT}
            ttl: -1
            unloadTimeout: 0
          never:
            cmd: server --port ${PORT}
            ttl: 0
          own:
            cmd: server --port ${PORT}
            ttl: 45
            unloadTimeout: 3
        """
    )
    got = {m: (s.ttl_s, s.unload_timeout_s) for m, s in config.models.items()}
    assert got == {
        "unset": (300.0, 20.0),
        "minus-one": (300.0, 20.0),
        "never": (0.0, 20.0),
        "own": (45.0, 3.0),
    }


def test_negative_timeouts_are_problems() -> None:
    found = problems(
        """
        globalTTL: -1
        models:
          a:
            cmd: server --port ${PORT}
            ttl: -2
            unloadTimeout: -1
        """
    )
    assert found == [
        "globalTTL (line 2): must be at least 0, got -1",
        "models.a.ttl (line 6): must be at least -1, got -2",
        "models.a.unloadTimeout (line 7): must be at least 0, got -1",
    ]


def test_concurrency_limit_zero_or_unset_means_default() -> None:
    config = load(
        """
        models:
          unset:
            cmd: server --port ${PORT}
          zero:
            cmd: server --port ${PORT}
            concurrencyLimit: 0
          three:
            cmd: server --port ${PORT}
            concurrencyLimit: 3
        """
    )
    limits = {m: s.concurrency_limit for m, s in config.models.items()}
    assert limits == {"unset": 10, "zero": 10, "three": 3}


def test_filters_strip_and_set_params_protect_model() -> None:
    config = load(
        """
        models:
          a:
            cmd: server --port ${PORT}
            filters:
              stripParams: " temperature, model ,top_p,,temperature "
              setParams:
                model: other
                top_k: 40
                stop: ["</s>"]
          legacy:
            cmd: server --port ${PORT}
            filters:
              strip_params: n_probs
        """
    )
    filters = config.models["a"].filters
    assert filters.strip_params == ("temperature", "top_p")
    assert dict(filters.set_params) == {"top_k": 40, "stop": ["</s>"]}
    assert config.models["legacy"].filters.strip_params == ("n_probs",)
    assert config.warnings == (
        "models.a.filters.stripParams (line 6): 'model' is never stripped; ignoring it here",
        "models.a.filters.setParams.model (line 8): 'model' cannot be set; ignoring it here",
    )


def test_filters_both_spellings_is_a_problem() -> None:
    found = problems(
        """
        models:
          a:
            cmd: server --port ${PORT}
            filters: {stripParams: a, strip_params: b}
        """
    )
    assert found == [
        "models.a.filters (line 5): set stripParams or its legacy spelling strip_params, not both"
    ]


def test_env_entries_become_a_mapping_and_malformed_ones_are_problems() -> None:
    config = load(
        """
        models:
          a:
            cmd: server --port ${PORT}
            env: ["CUDA_VISIBLE_DEVICES=0,1", "EMPTY=", "EQ=a=b"]
        """
    )
    assert dict(config.models["a"].env) == {
        "CUDA_VISIBLE_DEVICES": "0,1",
        "EMPTY": "",
        "EQ": "a=b",
    }
    found = problems(
        """
        models:
          a:
            cmd: server --port ${PORT}
            env: [NOVALUE, "=x", "OK=1"]
        """
    )
    assert found == [
        "models.a.env[0] (line 5): expected KEY=VALUE, got 'NOVALUE'",
        "models.a.env[1] (line 5): expected KEY=VALUE, got '=x'",
    ]


def test_display_fields_and_flags() -> None:
    config = load(
        """
        models:
          a:
            cmd: server --port ${PORT}
            name: Model A
            description: the first
            unlisted: true
            useModelName: upstream-name
            metadata: {size: 7, tags: [chat]}
        """
    )
    model = config.models["a"]
    assert (model.name, model.description, model.unlisted) == ("Model A", "the first", True)
    assert model.use_model_name == "upstream-name"
    assert dict(model.metadata) == {"size": 7, "tags": ["chat"]}


def test_aliases_must_be_unique_and_not_model_ids() -> None:
    found = problems(
        """
        models:
          a:
            cmd: server --port ${PORT}
            aliases: [shared, b, twice, twice]
          b:
            cmd: server --port ${PORT}
            aliases: [shared]
        """
    )
    assert found == [
        "models.a.aliases[1] (line 5): alias 'b' of model 'a' is the id of model 'b'",
        "models.a.aliases[3] (line 5): alias 'twice' is listed twice",
        "models.b.aliases[0] (line 8): alias 'shared' of model 'b' is already an alias of "
        "model 'a'",
    ]


def test_aliases_resolve_through_config() -> None:
    config = load(
        """
        models:
          a:
            cmd: server --port ${PORT}
            aliases: [alpha, first]
        """
    )
    assert config.models["a"].aliases == ("alpha", "first")
    assert config.resolve("first") == "a"
    assert config.resolve("a") == "a"
