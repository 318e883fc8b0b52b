"""Readiness: poll a URL until it answers 200, with a backoff that starts at a few milliseconds.

A tiny llama-server is healthy ~20 ms after spawn, so the first poll goes out at once and the
gaps stay short. Plain http:// is probed with a raw HTTP/1.1 request on a fresh connection, which
costs far less per poll than an HTTP client session; https:// goes through aiohttp.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp

log = logging.getLogger(__name__)

FIRST_DELAY_S = 0.002
BACKOFF = 1.5
MAX_DELAY_S = 0.05
PROBE_TIMEOUT_S = 2.0
"""One poll's own limit; a server that accepts but never answers must not stall the loop."""


@dataclass(slots=True)
class Readiness:
    polls: int = 0
    last: str = "no answer yet"
    """What the most recent poll saw, for error messages."""


async def wait_ready(
    url: str, progress: Readiness | None = None, nudge: asyncio.Event | None = None
) -> Readiness:
    """Return once GET `url` answers 200. Never gives up: the caller bounds it.

    Setting `nudge` makes the next poll go out at once instead of after the backoff delay: the
    supervisor sets it whenever the child prints, because servers log the moment they start
    listening or finish loading, so readiness is seen within a poll's time of it happening.
    """
    progress = progress if progress is not None else Readiness()
    delay = FIRST_DELAY_S
    parts = urlsplit(url)
    session: aiohttp.ClientSession | None = None
    try:
        if parts.scheme == "https":
            session = aiohttp.ClientSession()
        while True:
            progress.polls += 1
            if session is not None:
                status = await _probe_aiohttp(session, url)
            else:
                status = await probe_http(url)
            progress.last = f"HTTP {status}" if isinstance(status, int) else status
            if status == 200:
                return progress
            await _pause(delay, nudge)
            delay = min(delay * BACKOFF, MAX_DELAY_S)
    finally:
        if session is not None:
            await session.close()


async def _pause(delay: float, nudge: asyncio.Event | None) -> None:
    if nudge is None:
        await asyncio.sleep(delay)
        return
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(delay):
            await nudge.wait()
    nudge.clear()


async def ready_unless_exited(
    url: str | None,
    exited: asyncio.Future[int],
    progress: Readiness,
    *,
    name: str,
    nudge: asyncio.Event | None = None,
) -> bool:
    """Poll `url` until ready (True) or until the process has exited (False), whichever is first.

    With no URL there is nothing to wait for: ready as soon as spawned. The caller bounds it.
    """
    if url is None:
        return True
    poll = asyncio.get_running_loop().create_task(
        wait_ready(url, progress, nudge), name=f"health:{name}"
    )
    try:
        either: set[asyncio.Future[Any]] = {poll, exited}
        await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
    finally:
        if not poll.done():
            poll.cancel()
            await asyncio.wait({poll}, timeout=1.0)
    if exited.done():
        return False
    poll.result()
    return True


async def probe_http(url: str, timeout_s: float = PROBE_TIMEOUT_S) -> int | str:
    """GET an http:// URL once: the status code, or a short reason why there was none."""
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    port = parts.port or 80
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    netloc = parts.netloc.rpartition("@")[2]
    request = (
        f"GET {target} HTTP/1.1\r\nHost: {netloc}\r\nUser-Agent: swapd-health\r\n"
        "Accept: */*\r\nConnection: close\r\n\r\n"
    ).encode("latin-1")
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(timeout_s):
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(request)
            status_line = await reader.readline()
    except TimeoutError:
        return "timed out"
    except OSError as exc:
        # asyncio replaces strerror with "Connect call failed (...)"; the errno says it better.
        return os.strerror(exc.errno).lower() if exc.errno else type(exc).__name__
    finally:
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError, TimeoutError):
                async with asyncio.timeout(0.1):
                    await writer.wait_closed()
    return _parse_status(status_line)


def _parse_status(line: bytes) -> int | str:
    parts = line.split(None, 2)
    if len(parts) >= 2 and parts[0].startswith(b"HTTP/") and parts[1].isdigit():
        return int(parts[1])
    return "no HTTP status line" if line else "connection closed without an answer"


async def _probe_aiohttp(session: aiohttp.ClientSession, url: str) -> int | str:
    try:
        async with session.get(
            url, timeout=aiohttp.ClientTimeout(total=PROBE_TIMEOUT_S), allow_redirects=False
        ) as resp:
            return resp.status
    except TimeoutError:
        return "timed out"
    except (aiohttp.ClientError, OSError) as exc:
        return type(exc).__name__
