"""Stopping a model's child: ask politely (cmdStop or SIGTERM), wait a bounded time, then
SIGKILL the group and every descendant snapshotted before the stop.

llama-server ignores SIGTERM while a request is in flight (a stream holds it until its next SSE
ping, a plain request until the client leaves), so the escalation is the normal path under load,
not a corner case. Every wait is bounded; nothing waits for pipe EOF.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
from collections.abc import Callable

from swapd.config.model import ModelSpec
from swapd.process.kill import kill_group, kill_survivors, snapshot_descendants
from swapd.process.spawn import Child

log = logging.getLogger(__name__)

REAP_TIMEOUT_S = 5.0
"""How long to wait for a SIGKILLed child to be reaped and its pipes drained. Only a process
stuck in the kernel (uninterruptible sleep) takes longer."""


async def terminate(
    child: Child,
    spec: ModelSpec,
    *,
    timeout_s: float,
    polite: bool,
    on_line: Callable[[str], None],
) -> None:
    """Stop `child` and everything it started, within timeout_s plus REAP_TIMEOUT_S.

    polite: ask first (cmdStop, else SIGTERM to the group) and give it timeout_s. Otherwise only
    a configured cmdStop is tried before the SIGKILL.
    """
    loop = asyncio.get_running_loop()
    began = loop.time()
    deadline = began + max(0.0, timeout_s)
    # Once the child is reaped its pid may belong to someone else: no snapshot then.
    descendants = [] if child.exited.done() else snapshot_descendants(child.pid)
    method = "sigkill"
    if not child.exited.done() and (polite or spec.stop_argv):
        method = "cmd_stop"
        if not spec.stop_argv or not await run_stop_cmd(spec, child.pid, deadline, on_line):
            method = "sigterm"
            kill_group(child.pid, signal.SIGTERM)
        await asyncio.wait({child.exited}, timeout=max(0.0, deadline - loop.time()))
        if not child.exited.done():
            log.warning(
                "model stop escalating model=%s pid=%d method=%s waited_s=%.2f signal=SIGKILL",
                spec.id,
                child.pid,
                method,
                loop.time() - began,
            )
    kill_group(child.pid, signal.SIGKILL)
    swept = kill_survivors(descendants)
    await asyncio.wait({child.finished}, timeout=REAP_TIMEOUT_S)
    if not child.finished.done():
        log.error("model still alive after SIGKILL model=%s pid=%d", spec.id, child.pid)
        child.close()
    log.info(
        "model stopped model=%s pid=%d rc=%s method=%s stop_ms=%.1f swept=%d",
        spec.id,
        child.pid,
        child.returncode,
        method,
        (loop.time() - began) * 1000,
        swept,
    )


async def run_stop_cmd(
    spec: ModelSpec, pid: int, deadline: float, on_line: Callable[[str], None]
) -> bool:
    """Run cmdStop for `pid` until the deadline; False when it could not do its job."""
    assert spec.stop_argv is not None
    loop = asyncio.get_running_loop()
    argv = [arg.replace("${PID}", str(pid)) for arg in spec.stop_argv]
    env = {**os.environ, **spec.env}
    try:
        cmd = await Child.spawn(argv, env=env, on_line=on_line, die_with_parent=True)
    except (OSError, subprocess.SubprocessError) as exc:
        log.warning("model stop command failed model=%s error=%s fallback=sigterm", spec.id, exc)
        return False
    try:
        await asyncio.wait({cmd.exited}, timeout=max(0.0, deadline - loop.time()))
    finally:
        if not cmd.exited.done():
            kill_group(cmd.pid, signal.SIGKILL)
        await asyncio.wait({cmd.finished}, timeout=REAP_TIMEOUT_S)
        cmd.close()
    rc = cmd.returncode
    if rc != 0:
        log.warning(
            "model stop command failed model=%s pid=%d cmd_pid=%d rc=%s fallback=sigterm",
            spec.id,
            pid,
            cmd.pid,
            rc,
        )
        return False
    log.info("model stop command done model=%s pid=%d cmd_pid=%d", spec.id, pid, cmd.pid)
    return True
