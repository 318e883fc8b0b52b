"""livenessInterval and livenessTimeout: defaults, values and errors with their key paths."""

from __future__ import annotations

import pytest

from swapd.errors import ConfigError
from tests.config.helpers import load

MODEL = "models:\n  a:\n    cmd: server --port ${PORT}\n"


def test_liveness_defaults() -> None:
    config = load(MODEL)
    assert (config.liveness_interval_s, config.liveness_timeout_s) == (10.0, 5.0)


def test_liveness_values_and_off() -> None:
    config = load("livenessInterval: 0\nlivenessTimeout: 0.5\n" + MODEL)
    assert (config.liveness_interval_s, config.liveness_timeout_s) == (0.0, 0.5)


def test_liveness_bad_values_name_their_keys() -> None:
    with pytest.raises(ConfigError) as info:
        load("livenessInterval: -1\nlivenessTimeout: 0\n" + MODEL)
    text = str(info.value)
    assert "livenessInterval" in text
    assert "livenessTimeout" in text
