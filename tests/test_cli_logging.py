"""logLevel filters what swapd prints, not what /logs and the UI keep."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from swapd.cli import _configure_logging


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.usefixtures("restore_logging")
def test_log_level_warn_prints_warnings_but_keeps_model_output_flowing() -> None:
    _configure_logging("warn")
    root = logging.getLogger()
    (stderr,) = root.handlers
    assert stderr.level == logging.WARNING
    # swapd's own INFO records still reach the log hub behind /logs ...
    assert logging.getLogger("swapd.router").isEnabledFor(logging.INFO)
    # ... and models' output, which goes to the hub directly, is not made into records that
    # stderr would only drop.
    assert not logging.getLogger("swapd.child").isEnabledFor(logging.INFO)


@pytest.mark.usefixtures("restore_logging")
def test_log_level_debug_keeps_debug_records() -> None:
    _configure_logging("debug")
    assert logging.getLogger("swapd").isEnabledFor(logging.DEBUG)
    (stderr,) = logging.getLogger().handlers
    assert stderr.level == logging.DEBUG
