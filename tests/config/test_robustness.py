"""Any YAML document either loads or raises ConfigError: the loader never crashes."""

from __future__ import annotations

from typing import Any

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from swapd.config.load import load_config_text
from swapd.config.schema import load_schema
from swapd.errors import ConfigError

SCHEMA = load_schema()
TOP_KEYS = sorted(SCHEMA["properties"])
MODEL_KEYS = sorted(SCHEMA["$defs"]["model"]["properties"])
FILTER_KEYS = sorted(SCHEMA["$defs"]["filters"]["properties"])

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 70000),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(["", "none", "x", "a=b", "${PORT}", "${PID}", "${m}", "${MODEL_ID}", "#"]),
    st.text(max_size=12),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)


commands = st.sampled_from(["server --port ${PORT}", "server", "# only\n", "'x", "${m} ${PORT}"])
models = st.dictionaries(
    st.text(min_size=1, max_size=5),
    st.one_of(
        values,
        st.fixed_dictionaries(
            {"cmd": commands},
            optional={
                **{key: values for key in MODEL_KEYS if key != "cmd"},
                "filters": st.one_of(
                    values, st.dictionaries(st.sampled_from(FILTER_KEYS), values, max_size=3)
                ),
                "macros": st.dictionaries(st.sampled_from(["m", "n", "PORT", "a b"]), values),
            },
        ),
    ),
    max_size=3,
)
documents = st.one_of(
    values,
    st.fixed_dictionaries(
        {"models": models},
        optional={
            **{key: values for key in TOP_KEYS if key != "models"},
            "macros": st.dictionaries(st.sampled_from(["m", "n", "PID", "x"]), values),
            "hooks": st.fixed_dictionaries(
                {}, optional={"on_startup": st.fixed_dictionaries({"preload": values})}
            ),
        },
    ),
)


@settings(max_examples=100, deadline=None)
@given(documents)
def test_any_document_loads_or_raises_config_error(doc: Any) -> None:
    text = yaml.safe_dump(doc, allow_unicode=True)
    problems: list[str] = []
    try:
        config = load_config_text(text, port_free=lambda port: True)
    except ConfigError as exc:
        problems = exc.problems
        assert problems, "a ConfigError always lists its problems"
    else:
        assert set(config.models) <= set(doc["models"])
    assert all(isinstance(p, str) and ": " in p for p in problems)
