"""sendLoadingState: progress chunks for a streaming chat request that waits for its model.

A streaming /v1/chat/completions request for a model that is not ready starts router.acquire()
in a task. If the grant has not come after `GRACE_S`, swapd answers 200 text/event-stream at
once and sends OpenAI chat.completion.chunk events whose `delta.reasoning_content` carries one
progress line at a time: what the request waits for (its queue, models being stopped to make
room, the load), the elapsed seconds and the model's latest output line. A line goes out when
something changed (the router's, swap and log notices on the event bus wake the writer) and at
least every `TICK_S`. When the grant arrives the upstream's own event stream continues the same
response; an error after the 200 ends it with an SSE error event and `data: [DONE]`. A client
that leaves while waiting withdraws its request.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import time
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from swapd.core.state import Lease, ModelSnapshot, ModelState
from swapd.errors import SwapdHttpError
from swapd.obs.bus import EventBus, Subscription
from swapd.web.context import CONTEXT, SESSION, WebContext
from swapd.web.ports import RouterPort
from swapd.web.proxy import end_with_error, forward, forward_into
from swapd.web.tally import Tally

log = logging.getLogger(__name__)

CHAT_PATH = "/v1/chat/completions"
GRACE_S = 0.1
"""How long the grant may take before progress is streamed. Below what a person notices as a
delay, and long enough that a model that is about to be ready (or a short queue) does not put
a progress block in front of the answer; llama-swap streams at once."""
TICK_S = 1.0
"""A progress line at least this often while waiting (elapsed time moves on)."""
MIN_GAP_S = 0.25
"""At most one progress chunk per this interval, however many notices arrive (a loading
llama-server prints hundreds of lines)."""
OUTPUT_MAX = 240
"""A model output line in a progress chunk is cut to this many characters."""
BANNER = "━━━━━"
_WAKE_KINDS = ("swap", "model", "queue", "log")
_ids = itertools.count(1)


def wants_loading_state(ctx: WebContext, model: str) -> bool:
    """sendLoadingState applies to the model and the (advisory) snapshot says it is not ready."""
    spec = ctx.config.models.get(model)
    if spec is None or not spec.send_loading_state:
        return False
    snap = ctx.router.snapshot().get(model)
    return snap is None or snap.state != ModelState.READY


async def serve_with_loading_state(
    request: web.Request,
    tally: Tally,
    requested: str,
    target: str,
    body: bytes,
    drop: frozenset[str],
) -> web.StreamResponse:
    """Acquire the model, streaming progress if that takes longer than GRACE_S, then forward.

    Errors before anything was sent raise as for any request; after that they end the stream.
    """
    ctx = request.app[CONTEXT]
    router = ctx.router
    loop = asyncio.get_running_loop()
    tally.acquiring = time.monotonic()
    acquiring = loop.create_task(router.acquire(tally.model), name=f"acquire:{tally.model}")
    try:
        await asyncio.wait((acquiring,), timeout=GRACE_S)
    except BaseException:
        _withdraw(router, acquiring)
        raise
    if acquiring.done():
        try:
            lease = acquiring.result()
        finally:
            tally.acquired = time.monotonic()
        try:
            return await forward(request, request.app[SESSION], lease, target, body, drop, tally)
        finally:
            router.release(lease)

    progress = Progress(router, ctx.obs.bus, tally.model, requested)
    out = web.StreamResponse(
        status=200,
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
        },
    )
    tally.status = 200
    tally.streamed = True
    try:
        await out.prepare(request)
        lease = await progress.until_granted(out, acquiring)
    except SwapdHttpError as err:
        tally.acquired = time.monotonic()
        tally.fail(err.status, str(err))
        try:
            await out.write(progress.chunk(f"Failed: {err}\n{BANNER}\n"))
        except ConnectionError:
            tally.client_left()
            return out
        await end_with_error(out, tally, err.body())
        return out
    except ConnectionError:
        _withdraw(router, acquiring)
        tally.client_left()
        return out
    except BaseException:
        _withdraw(router, acquiring)
        raise
    tally.acquired = time.monotonic()
    try:
        await forward_into(request, out, request.app[SESSION], lease, target, body, drop, tally)
    finally:
        router.release(lease)
    return out


def _withdraw(router: RouterPort, acquiring: asyncio.Task[Lease]) -> None:
    """Give up on a request: cancel its acquire, or return a grant that came anyway."""

    def settle(task: asyncio.Task[Lease]) -> None:
        if task.cancelled():
            return  # acquire() withdrew the request itself
        if task.exception() is None:
            router.release(task.result())

    acquiring.cancel()
    acquiring.add_done_callback(settle)


class Progress:
    """The progress lines of one waiting request, as chat.completion.chunk events."""

    def __init__(self, router: RouterPort, bus: EventBus, model: str, requested: str) -> None:
        self.router = router
        self.bus = bus
        self.model = model
        self.requested = requested
        self.id = f"chatcmpl-swapd-loading-{next(_ids)}"
        self.created = int(time.time())
        self.started = time.monotonic()
        self.evicting: tuple[str, ...] = ()
        self._first = True
        self._status: str | None = None
        self._output: str | None = None
        for notice in bus.recent(("swap",)):
            self.noticed(notice.kind, notice.data)

    def chunk(self, text: str) -> bytes:
        delta: dict[str, str] = {"reasoning_content": text}
        if self._first:
            delta = {"role": "assistant", **delta}
            self._first = False
        event = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.requested,
            "choices": [{"index": 0, "delta": delta, "finish_reason": None}],
        }
        return b"data: " + json.dumps(event, ensure_ascii=False).encode() + b"\n\n"

    def noticed(self, kind: str, data: Mapping[str, Any]) -> None:
        if kind == "swap" and data.get("model") == self.model:
            evict = data.get("evict")
            if data.get("phase") == "start" and isinstance(evict, list):
                self.evicting = tuple(str(m) for m in evict)
            else:
                self.evicting = ()  # that swap is over

    def status(self) -> str:
        """What the request waits for now, from the router's advisory snapshot."""
        snapshot = self.router.snapshot()
        me = snapshot.get(self.model)
        state = me.state if me is not None else ModelState.STOPPED
        model = self.model
        if state == ModelState.STARTING:
            # The router reports evicted models as stopping until the whole swap is done, so
            # the two phases (evictions, then the load) cannot be told apart here.
            text = f"starting {model}"
            if self.evicting:
                text += f" (evicting {', '.join(self.evicting)})"
        elif state == ModelState.READY:
            text = f"{model} is ready; waiting for a free slot"
        elif state == ModelState.STOPPING:
            text = f"waiting for {model} to stop before it starts again"
        else:
            busy = ", ".join(
                f"{m} ({s.in_flight} in flight)"
                for m, s in snapshot.items()
                if m != model and s.in_flight
            )
            stopping = _names(snapshot, tuple(snapshot), ModelState.STOPPING)
            if busy:
                text = f"queued: waiting for {busy} to finish"
            elif stopping:
                text = f"queued: waiting for {stopping} to stop"
            else:
                text = "queued"
        waiting = me.queued if me is not None else 0
        if waiting > 1:
            text += f" ({waiting} requests waiting for {model})"
        return text

    def lines(self, *, tick: bool) -> str:
        """The lines to send now: the status when it changed or on a tick, a new output line."""
        elapsed = time.monotonic() - self.started
        lines = []
        status = self.status()
        if status != self._status or tick:
            self._status = status
            lines.append(f"[{elapsed:.1f}s] {status}\n")
        recent = self.router.recent_output(self.model, 1)
        output = recent[-1].strip() if recent else ""
        if output and output != self._output:
            self._output = output
            if len(output) > OUTPUT_MAX:
                output = output[: OUTPUT_MAX - 1] + "…"
            lines.append(f"[{elapsed:.1f}s] {self.model}> {output}\n")
        return "".join(lines)

    async def until_granted(self, out: web.StreamResponse, acquiring: asyncio.Task[Lease]) -> Lease:
        """Write progress to `out` until the grant; returns the lease or raises acquire's error.

        Raises ConnectionError when the client is gone.
        """
        loop = asyncio.get_running_loop()
        wake = asyncio.Event()
        granted = asyncio.Event()

        def on_grant(_task: asyncio.Task[Lease]) -> None:
            granted.set()
            wake.set()

        acquiring.add_done_callback(on_grant)
        sub = self.bus.subscribe(_WAKE_KINDS)
        watcher = loop.create_task(self._watch(sub, wake), name=f"loading:{self.model}")
        try:
            # Scheduling runs on the loop's clock; elapsed times in the text on time.monotonic().
            now = loop.time()
            opening = f"{BANNER}\nswapd loading model: {self.model}\n"
            await out.write(self.chunk(opening + self.lines(tick=True)))
            written = now
            due = now + TICK_S
            while not acquiring.done():
                await _wait(wake, due)  # a notice, the grant, or time for a tick
                wake.clear()
                if acquiring.done():
                    break
                if loop.time() < written + MIN_GAP_S:
                    await _wait(granted, written + MIN_GAP_S)
                    if acquiring.done():
                        break
                now = loop.time()
                tick = now >= due
                text = self.lines(tick=tick)
                if text:
                    await out.write(self.chunk(text))
                    written = now
                if tick:
                    due = now + TICK_S
            lease = acquiring.result()
            took = time.monotonic() - self.started
            await out.write(self.chunk(f"Done! ({took:.2f}s)\n{BANNER}\n\n"))
            return lease
        finally:
            sub.close()
            watcher.cancel()

    async def _watch(self, sub: Subscription, wake: asyncio.Event) -> None:
        async for notice in sub:
            if notice.kind == "log" and notice.data.get("model") != self.model:
                continue  # other models' output and swapd's own log change nothing here
            self.noticed(notice.kind, notice.data)
            wake.set()


async def _wait(event: asyncio.Event, deadline: float) -> None:
    """Until `event` is set or the loop's clock reaches `deadline`."""
    try:
        async with asyncio.timeout_at(deadline):
            await event.wait()
    except TimeoutError:
        pass


def _names(
    snapshot: Mapping[str, ModelSnapshot], models: tuple[str, ...], state: ModelState
) -> str:
    return ", ".join(m for m in models if (s := snapshot.get(m)) is not None and s.state == state)
