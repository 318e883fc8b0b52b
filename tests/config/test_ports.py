"""`${PORT}`: sorted model-id order, skipping ports taken on the host or by another model."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from swapd.config.load import load_config_text
from swapd.config.ports import allocate_ports, port_is_free
from tests.config.helpers import load, problems

THREE_MODELS = """
startPort: {start}
models:
  zeta:
    cmd: server --port ${{PORT}}
  alpha:
    cmd: server --port ${{PORT}}
  fixed:
    cmd: server --port 9999
    proxy: http://127.0.0.1:9999/
  mid:
    cmd: server --port ${{PORT}}
"""


@pytest.fixture
def listening_port() -> Iterator[int]:
    """A port a real socket is listening on for the duration of the test."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def test_ports_go_in_sorted_model_id_order_to_models_using_port() -> None:
    config = load(THREE_MODELS.format(start=7000))
    ports = {mid: spec.port for mid, spec in config.models.items()}
    assert ports == {"alpha": 7000, "mid": 7001, "zeta": 7002, "fixed": None}
    assert config.models["mid"].argv == ("server", "--port", "7001")
    assert config.models["mid"].proxy == "http://127.0.0.1:7001"


def test_ports_skip_what_port_free_says_is_taken() -> None:
    asked: list[int] = []

    def port_free(port: int) -> bool:
        asked.append(port)
        return port not in (7000, 7002)

    config = load(THREE_MODELS.format(start=7000), port_free=port_free)
    ports = {mid: spec.port for mid, spec in config.models.items() if spec.port}
    assert ports == {"alpha": 7001, "mid": 7003, "zeta": 7004}
    assert asked == [7000, 7001, 7002, 7003, 7004]


def test_ports_skip_a_port_a_real_socket_is_bound_to(listening_port: int) -> None:
    assert not port_is_free(listening_port)
    # No port_free given: the loader probes the host itself.
    text = f"startPort: {listening_port}\nmodels:\n  a:\n    cmd: server --port ${{PORT}}\n"
    port = load_config_text(text).models["a"].port
    assert port is not None
    assert port > listening_port


def test_port_is_free_for_a_port_nobody_holds() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    assert port_is_free(port)


def test_ports_running_out_is_a_problem() -> None:
    found = problems(
        """
        startPort: 65535
        models:
          a:
            cmd: server --port ${PORT}
          b:
            cmd: server --port ${PORT}
        """
    )
    assert found == [
        "models.b.cmd (line 7): no free port left between startPort (65535) and 65535 for ${PORT}"
    ]


def test_allocate_ports_reports_exhausted_ids() -> None:
    ports, exhausted = allocate_ports(["b", "a"], 65534, lambda p: p != 65535)
    assert ports == {"a": 65534}
    assert exhausted == ["b"]


def test_ports_port_substituted_everywhere_in_the_model() -> None:
    config = load(
        """
        models:
          a:
            cmd: server --port ${PORT}
            env: ["LISTEN=${PORT}"]
            metadata:
              port: ${PORT}
              url: http://localhost:${PORT}/v1
        """
    )
    model = config.models["a"]
    assert model.env == {"LISTEN": "5800"}
    assert model.metadata == {"port": 5800, "url": "http://localhost:5800/v1"}


def test_ports_proxy_with_port_needs_port_in_cmd() -> None:
    found = problems(
        """
        models:
          explicit:
            cmd: server --port 8080
            proxy: http://127.0.0.1:${PORT}
          implicit:
            cmd: server --port 8081
          meta:
            cmd: server --port 8082
            proxy: http://127.0.0.1:8082
            metadata: {port: "${PORT}"}
        """
    )
    assert found == [
        "models.explicit.proxy (line 5): proxy uses ${PORT}, but cmd does not",
        "models.implicit.proxy (line 6): not set, and the default http://127.0.0.1:${PORT} needs "
        "${PORT} in cmd: use ${PORT} in cmd or set proxy",
        "models.meta.metadata.port (line 11): uses '${PORT}', but cmd does not, so no port is "
        "allocated for this model",
    ]
