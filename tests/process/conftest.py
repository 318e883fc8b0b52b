"""Helpers for supervising real subprocesses of the fake upstream."""

from __future__ import annotations

import asyncio
import socket
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from pathlib import Path
from typing import Protocol

import psutil
import pytest
import uvloop

from swapd.config.model import ModelSpec
from swapd.process.supervisor import ModelProcess

FAKE = Path(__file__).resolve().parents[1] / "fakes" / "fake_upstream.py"


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> dict[str, Callable[[], asyncio.AbstractEventLoop]]:
    """The daemon runs on uvloop and embedders may use asyncio's loop: supervision must hold on
    both (their subprocess transports differ in type and in callback order)."""
    return {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def fake_spec(
    *flags: str,
    model: str = "m",
    port: int | None = None,
    check_endpoint: str | None = "/health",
    stop_argv: tuple[str, ...] | None = None,
    unload_timeout_s: float = 5.0,
    env: Mapping[str, str] | None = None,
) -> ModelSpec:
    port = free_port() if port is None else port
    argv = (sys.executable, str(FAKE), "--port", str(port), "--model", model, *flags)
    return ModelSpec(
        id=model,
        cmd=" ".join(argv),
        argv=argv,
        stop_argv=stop_argv,
        proxy=f"http://127.0.0.1:{port}",
        port=port,
        check_endpoint=check_endpoint,
        unload_timeout_s=unload_timeout_s,
        env=dict(env or {}),
    )


def alive(proc: psutil.Process) -> bool:
    """Still the same running process (psutil compares create_time); zombies count as gone."""
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def tree(pid: int) -> list[psutil.Process]:
    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


async def wait_until(
    predicate: Callable[[], bool], timeout_s: float = 5.0, what: str = "condition"
) -> None:
    """Poll a condition (bounded); for state the test cannot get an event for."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(0.005)


async def wait_gone(procs: Iterable[psutil.Process], timeout_s: float = 5.0) -> None:
    procs = list(procs)
    await wait_until(lambda: not any(alive(p) for p in procs), timeout_s, "processes to die")


class MakeProcess(Protocol):
    def __call__(
        self,
        spec: ModelSpec,
        *,
        start_timeout_s: float = ...,
        on_unexpected_exit: Callable[[int, str], None] | None = ...,
        output_lines: int = ...,
        liveness_interval_s: float = ...,
    ) -> ModelProcess: ...


@pytest.fixture
async def make_process() -> AsyncIterator[MakeProcess]:
    """Builds ModelProcess objects and closes each one (killing its child) after the test."""
    made: list[ModelProcess] = []

    def make(
        spec: ModelSpec,
        *,
        start_timeout_s: float = 20.0,
        on_unexpected_exit: Callable[[int, str], None] | None = None,
        output_lines: int = 500,
        liveness_interval_s: float = 10.0,
    ) -> ModelProcess:
        mp = ModelProcess(
            spec,
            start_timeout_s=start_timeout_s,
            on_unexpected_exit=on_unexpected_exit,
            output_lines=output_lines,
            liveness_interval_s=liveness_interval_s,
            liveness_timeout_s=min(5.0, liveness_interval_s),
        )
        made.append(mp)
        return mp

    yield make
    for mp in made:
        await mp.close()
