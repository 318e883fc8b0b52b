"""YAML parsing: syntax errors with lines, duplicate keys, merge keys, odd documents."""

from __future__ import annotations

from pathlib import Path

import pytest

from swapd.config.load import load_config
from swapd.errors import ConfigError
from tests.config.helpers import load, problems


def test_yaml_syntax_error_reports_its_line() -> None:
    found = problems(
        """
        models:
          a:
            cmd: llama-server --port ${PORT}
           bad: [unclosed
        """
    )
    assert len(found) == 1
    assert found[0].startswith("(top level) (line 5): invalid YAML:")


def test_yaml_duplicate_key_is_a_problem_naming_both_lines() -> None:
    found = problems(
        """
        models:
          a:
            cmd: llama-server --port ${PORT}
            ttl: 5
            ttl: 6
        """
    )
    assert found == ["models.a.ttl (line 6): duplicate key 'ttl' (first given on line 5)"]


def test_yaml_merge_keys_work_and_explicit_keys_win() -> None:
    config = load(
        """
        models:
          a: &base
            cmd: llama-server --port ${PORT}
            ttl: 30
          b:
            <<: *base
            ttl: 60
        """
    )
    assert config.models["b"].ttl_s == 60.0
    assert config.models["b"].argv == ("llama-server", "--port", "5801")


def test_yaml_numeric_model_ids_keep_their_spelling() -> None:
    config = load(
        """
        models:
          7b:
            cmd: llama-server --port ${PORT}
          1.0:
            cmd: llama-server --port ${PORT}
        """
    )
    assert set(config.models) == {"7b", "1.0"}


def test_yaml_empty_document_needs_models() -> None:
    assert problems("") == ["(top level): expected a mapping, got nothing (null)"]


def test_yaml_root_must_be_a_mapping() -> None:
    assert problems("- a\n- b\n") == ["(top level): expected a mapping, got a list"]


def test_yaml_several_documents_are_a_problem() -> None:
    found = problems("models: {}\n---\nmodels: {}\n")
    assert len(found) == 1
    assert "(line 2)" in found[0]
    assert "single document" in found[0]


def test_yaml_empty_models_is_allowed_also_as_null() -> None:
    assert load("models: {}\n").models == {}
    assert load("models:\n").models == {}


def test_load_config_reports_unreadable_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as caught:
        load_config(missing)
    assert caught.value.source == str(missing)
    assert len(caught.value.problems) == 1
    assert caught.value.problems[0].startswith("(top level): cannot read the file:")


def test_load_config_reports_non_utf8_file(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"models: {}\n# caf\xe9\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.problems[0].startswith("(top level): not UTF-8 text")


def test_load_config_records_the_source(tmp_path: Path) -> None:
    path = tmp_path / "swapd.yaml"
    path.write_text("models: {}\n")
    assert load_config(path).source == path
