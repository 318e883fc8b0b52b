"""Run the real `swapd` CLI as a subprocess for end-to-end tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import psutil


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Daemon:
    proc: subprocess.Popen[bytes]
    url: str
    log_path: Path
    children_seen: set[int] = field(default_factory=set)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def descendants(self) -> list[psutil.Process]:
        try:
            kids = psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []
        self.children_seen.update(k.pid for k in kids)
        return kids

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        self.descendants()
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            raise AssertionError(f"swapd did not exit within {timeout}s\n{self.log()}") from None


def start_daemon(config: Path, tmp: Path, *, timeout: float = 20.0) -> Daemon:
    port = free_port()
    log_path = tmp / f"swapd-{port}.log"
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "swapd", "-config", str(config), "-listen", f"127.0.0.1:{port}"],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    daemon = Daemon(proc=proc, url=f"http://127.0.0.1:{port}", log_path=log_path)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"swapd exited with {proc.returncode}\n{daemon.log()}")
        try:
            with urllib.request.urlopen(daemon.url + "/health", timeout=1) as resp:
                if resp.status == 200:
                    return daemon
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.02)  # polling for startup, bounded by the deadline
    daemon.stop(signal.SIGKILL)
    raise AssertionError(f"swapd did not answer /health within {timeout}s\n{daemon.log()}")


def wait_gone(pids: set[int], timeout: float = 10.0) -> list[int]:
    """PIDs from `pids` still alive after `timeout` (bounded polling)."""
    deadline = time.monotonic() + timeout
    alive = list(pids)
    while alive and time.monotonic() < deadline:
        alive = [p for p in alive if psutil.pid_exists(p) and _not_zombie(p)]
        if alive:
            time.sleep(0.05)
    return alive


def _not_zombie(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
