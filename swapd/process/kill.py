"""Killing a process tree: the child's group, and descendants that left the group.

psutil.Process objects remember their create_time, so a snapshot taken before the stop can be
killed later without hitting an unrelated process that reused a pid.
"""

from __future__ import annotations

import logging
import os
import signal

import psutil

log = logging.getLogger(__name__)


def kill_group(pgid: int, sig: signal.Signals) -> bool:
    """Signal a whole process group; False when nothing was left in it."""
    if pgid <= 1:
        return False
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    except PermissionError:
        log.warning("cannot signal process group pgid=%d signal=%s", pgid, sig.name)
        return False
    return True


def snapshot_descendants(pid: int) -> list[psutil.Process]:
    """Every descendant of `pid` right now, including those that started their own session."""
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []


def kill_survivors(procs: list[psutil.Process]) -> int:
    """SIGKILL the snapshotted processes that are still the same processes; how many were hit.

    Never waits on them: the direct child is reaped by asyncio, and the others are reparented
    to init (or the nearest subreaper), which reaps them.
    """
    killed = 0
    for proc in procs:
        try:
            if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                proc.kill()
                killed += 1
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            pass
        except psutil.AccessDenied:
            log.warning("cannot kill descendant pid=%d (access denied)", proc.pid)
    return killed
