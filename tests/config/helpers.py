"""Loading config snippets in tests: dedented text, every port free unless a test says not."""

from __future__ import annotations

import textwrap
from collections.abc import Callable

import pytest

from swapd.config.load import load_config_text
from swapd.config.model import Config
from swapd.errors import ConfigError


def _all_free(port: int) -> bool:
    return True


def load(text: str, *, port_free: Callable[[int], bool] = _all_free) -> Config:
    return load_config_text(textwrap.dedent(text), source="test.yaml", port_free=port_free)


def problems(text: str, *, port_free: Callable[[int], bool] = _all_free) -> list[str]:
    """The problems a config is rejected with; fails the test if it loads."""
    with pytest.raises(ConfigError) as caught:
        load(text, port_free=port_free)
    assert caught.value.source == "test.yaml"
    return caught.value.problems
