"""What swapd learns about one model-dispatched request while serving it, and its record.

The relay fills a `Tally` as the answer goes by (status, first byte, token counts); once the
response is sent, `report` turns it into the request's RequestRecord for the Observer.
"""

from __future__ import annotations

import json
import logging
import time

from swapd.obs.activity import RequestRecord
from swapd.obs.hub import Observer
from swapd.obs.tokens import NO_TOKENS, JsonTokens, SseTokens, json_tokens

log = logging.getLogger(__name__)

CLIENT_LEFT = 499
"""The status recorded when the client hung up before its response was complete (nginx's)."""
ERROR_MESSAGE_MAX = 500
"""An upstream's error message is cut to this many characters in the activity record."""


class Tally:
    """What swapd learns about one model-dispatched request while serving it."""

    __slots__ = (
        "acquired",
        "acquiring",
        "endpoint",
        "error",
        "first_byte",
        "model",
        "payload",
        "sniffer",
        "started",
        "status",
        "streamed",
    )

    def __init__(self, model: str, endpoint: str, started: float, streamed: bool) -> None:
        self.model = model
        self.endpoint = endpoint
        self.started = started
        """time.monotonic() when the request arrived."""
        self.streamed = streamed
        """The request asked for a stream; then: the response is an event stream."""
        self.acquiring = started
        self.acquired: float | None = None
        """When router.acquire() returned or raised."""
        self.first_byte: float | None = None
        self.status = 0
        self.error: str | None = None
        self.sniffer: SseTokens | JsonTokens | None = None
        self.payload: bytes | None = None
        """A whole JSON response body, read for tokens once it is sent."""

    def fail(self, status: int, error: str) -> None:
        self.status = status
        self.error = error

    def client_left(self) -> None:
        self.fail(CLIENT_LEFT, "the client disconnected before the response was complete")

    def record(self, ended: float) -> RequestRecord:
        total = ended - self.started
        if self.payload is not None:
            tokens = json_tokens(self.payload)
        elif self.sniffer is not None:
            tokens = self.sniffer.result()
        else:
            tokens = NO_TOKENS
        speed = tokens.tokens_per_s
        first_byte = self.first_byte
        if speed is None and tokens.tokens_out and self.streamed and first_byte is not None:
            generating = ended - first_byte
            speed = tokens.tokens_out / generating if generating > 0 else None
        acquired = self.acquired if self.acquired is not None else ended
        error = self.error
        if error is None and self.status >= 400 and self.payload is not None:
            error = _error_message(self.payload)
        return RequestRecord(
            at=time.time() - total,
            model=self.model,
            endpoint=self.endpoint,
            status=self.status or 500,
            streamed=self.streamed,
            queue_wait_s=max(0.0, acquired - self.acquiring),
            ttfb_s=first_byte - self.started if first_byte is not None else None,
            total_s=total,
            tokens_in=tokens.tokens_in,
            tokens_out=tokens.tokens_out,
            tokens_per_s=speed,
            error=error,
        )


def _error_message(payload: bytes) -> str | None:
    """The message of an upstream's JSON error body (OpenAI's shape, or a bare message)."""
    try:
        body = json.loads(payload)
    except (ValueError, RecursionError):
        return None
    if not isinstance(body, dict):
        return None
    error = body.get("error")
    if isinstance(error, dict):
        error = error.get("message")
    for found in (error, body.get("message"), body.get("detail")):
        if isinstance(found, str) and found:
            return found[:ERROR_MESSAGE_MAX]
    return None


def report(obs: Observer, tally: Tally) -> None:
    """Hand the finished request to the observer. Run it with loop.call_soon from the handler:
    by then a whole body has been written, so reading its tokens delays nobody."""
    try:
        obs.request_finished(tally.record(time.monotonic()))
    except Exception:
        log.exception("could not record request model=%s", tally.model)
