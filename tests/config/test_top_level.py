"""Top-level keys, defaults, preload, and reporting every problem of a file at once."""

from __future__ import annotations

from pathlib import Path

from swapd.config.load import load_config_text
from swapd.config.model import DEFAULT_CONCURRENCY_LIMIT, DEFAULT_MAX_BODY_BYTES
from tests.config.helpers import load, problems


def test_defaults_for_a_minimal_config() -> None:
    config = load("models:\n  a:\n    cmd: server --port ${PORT}\n")
    assert config.health_check_timeout_s == 120.0
    assert config.log_level == "info"
    assert config.start_port == 5800
    assert config.global_ttl_s == 0.0
    assert config.unload_timeout_s == 10.0
    assert config.api_keys == ()
    assert config.preload == ()
    assert config.max_body_bytes == DEFAULT_MAX_BODY_BYTES
    assert config.warnings == ()
    model = config.models["a"]
    assert model.proxy == "http://127.0.0.1:5800"
    assert model.check_endpoint == "/health"
    assert model.stop_argv is None
    assert (model.ttl_s, model.unload_timeout_s) == (0.0, 10.0)
    assert model.concurrency_limit == DEFAULT_CONCURRENCY_LIMIT
    assert (model.unlisted, model.use_model_name, model.name, model.description) == (
        False,
        None,
        "",
        "",
    )
    assert (model.aliases, dict(model.env), dict(model.metadata)) == ((), {}, {})


def test_top_level_values_are_read() -> None:
    config = load(
        """
        healthCheckTimeout: 30
        logLevel: debug
        startPort: 9000
        globalTTL: 600
        unloadTimeout: 0
        apiKeys: [sk-one, sk-two]
        maxBodyBytes: 1024
        models: {}
        """
    )
    assert config.health_check_timeout_s == 30.0
    assert config.log_level == "debug"
    assert config.start_port == 9000
    assert config.global_ttl_s == 600.0
    assert config.unload_timeout_s == 10.0, "unloadTimeout 0 means the default"
    assert config.api_keys == ("sk-one", "sk-two")
    assert config.max_body_bytes == 1024


def test_health_check_timeout_below_15_is_kept_with_a_warning() -> None:
    config = load("healthCheckTimeout: 5\nmodels: {}\n")
    assert config.health_check_timeout_s == 5.0
    assert config.warnings == (
        "healthCheckTimeout (line 1): llama-swap would raise this to 15 seconds; "
        "swapd uses 5 as given",
    )


def test_max_body_bytes_must_be_positive() -> None:
    assert problems("maxBodyBytes: 0\nmodels: {}\n") == [
        "maxBodyBytes (line 1): must be at least 1, got 0"
    ]


def test_preload_resolves_aliases_dedupes_and_rejects_unknown_names() -> None:
    text = """
        models:
          llama:
            cmd: server --port ${PORT}
            aliases: [gpt-4o-mini]
          qwen:
            cmd: server --port ${PORT}
        hooks:
          on_startup:
            preload: [gpt-4o-mini, qwen, llama]
        """
    assert load(text).preload == ("llama", "qwen")
    found = problems(text.replace("[gpt-4o-mini, qwen, llama]", "[qwenn, gpt-4o]"))
    assert found == [
        "hooks.on_startup.preload[0] (line 10): unknown model 'qwenn' (did you mean 'qwen'?)",
        "hooks.on_startup.preload[1] (line 10): unknown model 'gpt-4o' (did you mean "
        "'gpt-4o-mini'?)",
    ]


def test_preload_of_a_broken_model_is_not_reported_twice() -> None:
    found = problems(
        """
        models:
          a:
            ttl: 5
        hooks:
          on_startup:
            preload: [a]
        """
    )
    assert found == ["models.a (line 3): missing required key 'cmd'"]


def test_problems_across_stages_are_all_reported_in_line_order() -> None:
    found = problems(
        """
        startPort: 0
        models:
          a:
            cmd: server --port ${PORT} ${nope}
            aliases: [x]
            colour: red
          b:
            cmd: server --port ${PORT}
            aliases: [x]
            env: [BAD]
        hooks:
          on_startup:
            preload: [c]
        """
    )
    assert [p.split(":")[0] for p in found] == [
        "startPort (line 2)",
        "models.a.cmd (line 5)",
        "models.a (line 7)",
        "models.b.aliases[0] (line 10)",
        "models.b.env[0] (line 11)",
        "hooks.on_startup.preload[0] (line 14)",
    ]


def test_load_config_text_base_dir_sets_source(tmp_path: Path) -> None:
    config = load_config_text("models: {}\n", source="swapd.yaml", base_dir=tmp_path)
    assert config.source == tmp_path / "swapd.yaml"
    assert load_config_text("models: {}\n").source is None


def test_api_keys_may_use_global_macros_but_not_unknown_ones() -> None:
    config = load("macros:\n  k: sk-123\napiKeys: ['${k}']\nmodels: {}\n")
    assert config.api_keys == ("sk-123",)
    assert problems("apiKeys: ['${kk}']\nmodels: {}\n") == [
        "apiKeys[0] (line 1): unknown macro '${kk}'"
    ]
