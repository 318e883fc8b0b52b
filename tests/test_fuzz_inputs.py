"""Bad input never crashes swapd: fuzzed configs and request bodies end in clear errors."""

from __future__ import annotations

import json

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from swapd.config.load import load_config_text
from swapd.errors import ConfigError, SwapdHttpError
from swapd.web.openai import find_model

_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**40), 2**40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(["${PORT}", "${env.NOPE}", "${GPUS}", "8GiB", "-1", "auto", "none"]),
)
_keys = st.sampled_from(
    [
        "models", "cmd", "proxy", "ttl", "groups", "members", "matrix", "sets", "vram", "gpus",
        "macros", "aliases", "env", "routing", "filters", "setParams", "hooks", "preload",
        "apiKeys", "startPort", "sendLoadingState", "gpuSplit", "unloadTimeout", "x",
    ]
)  # fmt: skip
_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_keys, inner, max_size=5),
    max_leaves=25,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(_keys, _values, max_size=6))
def test_any_config_document_loads_or_raises_config_error(doc: dict[str, object]) -> None:
    _assert_loads_or_reports(yaml.safe_dump(doc, allow_unicode=True))


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_any_config_text_loads_or_raises_config_error(text: str) -> None:
    _assert_loads_or_reports(text)


def _assert_loads_or_reports(text: str) -> None:
    error: ConfigError | None = None
    try:
        load_config_text(text, port_free=lambda _port: True)
    except ConfigError as exc:  # anything else propagates and fails the test
        error = exc
    assert error is None or error.problems, "a ConfigError always lists its problems"


_content_types = st.sampled_from(
    [
        "application/json",
        "application/vnd.x+json",
        "multipart/form-data",
        "application/x-www-form-urlencoded",
        "text/plain",
        "",
    ]
)


@settings(max_examples=400, deadline=None)
@given(
    _content_types,
    st.one_of(
        st.binary(max_size=300),
        _values.map(lambda v: json.dumps({"model": v}).encode()),
        st.text(max_size=100).map(lambda t: ("{" * 50 + t).encode()),
    ),
    st.one_of(st.none(), st.text(max_size=10)),
    st.sampled_from(["", "multipart/form-data; boundary=xyz", "multipart/form-data; boundary="]),
)
def test_any_request_body_yields_a_model_or_a_4xx(
    content_type: str, body: bytes, query: str | None, header_ct: str
) -> None:
    status = 200
    try:
        found = find_model(content_type, header_ct or content_type, body, query)
    except SwapdHttpError as exc:  # anything else propagates and fails the test
        status = exc.status
    else:
        assert isinstance(found.name, str)
    assert status == 200 or 400 <= status < 500


@pytest.mark.parametrize("content_type", ["application/json", "text/plain"])
def test_json_nested_too_deeply_is_a_400_not_a_crash(content_type: str) -> None:
    body = b'{"model": "m", "x": ' + b"[" * 200_000 + b"]" * 200_000 + b"}"
    with pytest.raises(SwapdHttpError) as info:
        find_model(content_type, content_type, body, None)
    assert info.value.status == 400
