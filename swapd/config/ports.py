"""Handing out `${PORT}` values: in sorted model-id order, skipping ports in use on this host.

llama-swap hands out ports blindly and a port already taken makes a model fail at start; one
bind attempt per port at load time turns that into a skipped port instead.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable, Iterable

log = logging.getLogger(__name__)

MAX_PORT = 65535
PortFree = Callable[[int], bool]


def port_is_free(port: int) -> bool:
    """Whether a TCP socket can bind 127.0.0.1:port right now."""
    # No SO_REUSEADDR: a port that is listening, or still in TIME_WAIT, counts as taken.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def allocate_ports(
    model_ids: Iterable[str], start: int, port_free: PortFree
) -> tuple[dict[str, int], list[str]]:
    """`(model id -> port, ids left without a port because the range ran out)`."""
    ports: dict[str, int] = {}
    exhausted: list[str] = []
    candidate = start
    for model_id in sorted(model_ids):
        while candidate <= MAX_PORT and not port_free(candidate):
            log.debug("port %d is in use, not giving it to %s", candidate, model_id)
            candidate += 1
        if candidate > MAX_PORT:
            exhausted.append(model_id)
            continue
        ports[model_id] = candidate
        candidate += 1
    return ports, exhausted
