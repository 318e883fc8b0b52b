"""Spawning a child: own session, parent-death signal, output fed line by line to a callback.

The child is driven through a `SubprocessProtocol` rather than `asyncio.create_subprocess_exec`
on purpose. On Python 3.11 `Process.wait()` resolves only once the stdout/stderr pipes are closed
as well (python/cpython gh-119710), so a grandchild that inherited them hides the exit of the
child itself. `process_exited` fires as soon as the child is reaped, pipes or not, and the pipes
arrive as data callbacks, so no reader task can stall behind them either.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import cast

from swapd.process.kill import kill_group
from swapd.process.output import LineSplitter

log = logging.getLogger(__name__)

DRAIN_S = 0.25
"""After the child exits, how long to wait for output still in the pipes. Only a descendant
that escaped the process group and still holds a pipe makes this wait run out."""

_PR_SET_PDEATHSIG = 1
_PR_GET_PDEATHSIG = 2


def _load_prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        prctl: Callable[..., int] = libc.prctl
    except (OSError, AttributeError):
        return None
    # Proves the call works here (seccomp or an odd libc could refuse it) before a child relies
    # on it; reading our own setting changes nothing.
    current = ctypes.c_int(0)
    if prctl(_PR_GET_PDEATHSIG, ctypes.byref(current), 0, 0, 0) != 0:
        return None
    return prctl


_prctl = _load_prctl()


def parent_death_signal_supported() -> bool:
    return _prctl is not None


def _die_with_parent(parent_pid: int) -> Callable[[], None] | None:
    """A preexec_fn: the child gets SIGKILL when the thread that spawned it dies.

    The kernel ties this to the spawning *thread*, which here is the event loop's thread and
    lives as long as swapd. It is not inherited by the child's own children: those are left to
    the group kill of a normal stop.
    """
    prctl = _prctl
    if prctl is None:
        return None

    def preexec() -> None:
        if prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
        # The parent may have died between fork and prctl; then no signal would ever come.
        if os.getppid() != parent_pid:
            os.kill(os.getpid(), signal.SIGKILL)

    return preexec


class Child(asyncio.SubprocessProtocol):
    """One spawned process. `exited` resolves with the return code as soon as it is reaped;
    `finished` once its output has been drained and the transport closed as well."""

    def __init__(self, on_line: Callable[[str], None]) -> None:
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._on_line = on_line
        self._splitters = {1: LineSplitter(), 2: LineSplitter()}
        self._open_fds = {1, 2}
        self._transport: asyncio.SubprocessTransport | None = None
        self._drain_timer: asyncio.TimerHandle | None = None
        self.pid = 0
        self.exited: asyncio.Future[int] = loop.create_future()
        self.finished: asyncio.Future[int] = loop.create_future()

    @classmethod
    async def spawn(
        cls,
        argv: Sequence[str],
        *,
        env: Mapping[str, str],
        on_line: Callable[[str], None],
        die_with_parent: bool = True,
    ) -> Child:
        """Start `argv` in a new session. Raises OSError or SubprocessError if it cannot."""
        loop = asyncio.get_running_loop()
        preexec = _die_with_parent(os.getpid()) if die_with_parent else None
        _, child = await loop.subprocess_exec(
            lambda: cls(on_line),
            *argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=dict(env),
            start_new_session=True,
            preexec_fn=preexec,
        )
        return child

    @property
    def returncode(self) -> int | None:
        return self._transport.get_returncode() if self._transport is not None else None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transport implements the interface without subclassing it.
        self._transport = cast(asyncio.SubprocessTransport, transport)
        self.pid = self._transport.get_pid()

    def pipe_data_received(self, fd: int, data: bytes | str) -> None:
        if isinstance(data, str):
            data = data.encode()
        for line in self._splitters[fd].feed(data):
            self._emit(line)

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        for line in self._splitters[fd].flush():
            self._emit(line)
        self._open_fds.discard(fd)
        self._maybe_finish()

    def process_exited(self) -> None:
        rc = self.returncode
        assert rc is not None
        if not self.exited.done():
            self.exited.set_result(rc)
        # Whatever the child left in its group is an orphan nobody will stop; it may also be
        # holding our pipes open.
        kill_group(self.pid, signal.SIGKILL)
        self._drain_timer = self._loop.call_later(DRAIN_S, self._finish)
        self._maybe_finish()

    def _emit(self, line: str) -> None:
        try:
            self._on_line(line)
        except Exception:
            log.exception("output callback failed pid=%d", self.pid)

    def _maybe_finish(self) -> None:
        if self.exited.done() and not self._open_fds:
            self._finish()

    def _finish(self) -> None:
        if self.finished.done():
            return
        if self._drain_timer is not None:
            self._drain_timer.cancel()
        for splitter in self._splitters.values():
            for line in splitter.flush():
                self._emit(line)
        self.close()
        rc = self.returncode
        self.finished.set_result(rc if rc is not None else -1)

    def close(self) -> None:
        """Release the pipes. Only safe once the child has been reaped: asyncio's close() would
        otherwise kill and poll() it behind the child watcher's back."""
        if self._drain_timer is not None:
            self._drain_timer.cancel()
        if self._transport is not None and self.exited.done():
            self._transport.close()


def describe_exit(rc: int | None) -> str:
    if rc is None:
        return "is still running"
    if rc < 0:
        with contextlib.suppress(ValueError):
            return f"was killed by signal {signal.Signals(-rc).name}"
        return f"was killed by signal {-rc}"
    return f"exited with code {rc}"
