"""swapd's log and every model's output, kept in bounded rings and published as "log" notices.

`LogHub` is a logging.Handler. app.serve() installs it on the root logger (and removes it on the
way out), so it sees what the stderr handler sees: swapd's own records and, under the
`swapd.child` logger, every line a model's child printed (swapd.process.output logs each one with
`extra={"model": id}`). It keeps

* the combined log: the last `capacity` records, formatted like the stderr log
  ("2025-01-02 03:04:05,678 INFO    swapd.child: tiny-a | <line>"), swapd's and the models';
* per model: the last `model_capacity` lines of that model's output, as the child printed them;

and publishes each record on the bus as a "log" notice:
``{"model": id | None, "line": <combined line>}`` plus ``"output": <raw line>`` for model output.

Rules a logging handler must keep: it never raises into the code that logged (errors go to
logging's own handleError); it is cheap (one format, two deque appends, one publish); a record
logged while the handler is busy on the same thread (a log call from inside the publish path) is
dropped instead of recursing; and a record from another thread (the NVML worker logs warnings)
does not touch the rings or the bus there: it is handed to the event loop's thread with
`loop.call_soon_threadsafe`, so rings and bus are only ever touched from the loop's thread.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Iterator

from swapd.obs.bus import EventBus

LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
"""The same layout as the stderr log (swapd.cli)."""

CHILD_LOGGER = "swapd.child"


class LogLine:
    """One record of the combined log. Formatting the timestamp is most of a record's cost and
    most records are never read, so the line is rendered on first read."""

    __slots__ = ("_created", "_level", "_line", "_logger", "_message", "model", "output")

    def __init__(
        self,
        created: float,
        level: str,
        logger: str,
        message: str,
        model: str | None = None,
        output: str | None = None,
    ) -> None:
        self.model = model
        """The model whose child printed it; None for swapd's own records."""
        self.output = output
        """The model's line as the child printed it (model output only)."""
        self._created = created
        self._level = level
        self._logger = logger
        self._message = message
        self._line: str | None = None

    @property
    def line(self) -> str:
        """Formatted like the stderr log: "2025-01-02 03:04:05,678 INFO    logger: message"."""
        if self._line is None:
            stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self._created))
            millis = int(self._created * 1000) % 1000
            self._line = f"{stamp},{millis:03d} {self._level:<7} {self._logger}: {self._message}"
        return self._line


class LogHub(logging.Handler):
    def __init__(
        self,
        bus: EventBus | None = None,
        *,
        capacity: int = 2000,
        model_capacity: int = 1000,
    ) -> None:
        super().__init__()
        if capacity < 1 or model_capacity < 1:
            raise ValueError("log ring capacities must be at least 1")
        self.setFormatter(logging.Formatter(LOG_FORMAT))
        self.bus = bus
        self._lines: deque[LogLine] = deque(maxlen=capacity)
        self._model_capacity = model_capacity
        self._models: dict[str, deque[str]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._busy = threading.local()
        self._installed_on: logging.Logger | None = None
        self._direct = False
        """model_line() is in use: child records through logging would be kept twice."""
        self.dropped = 0
        """Records dropped: logged from inside the handler, or after the loop was closed."""

    # -- lifetime ------------------------------------------------------------------------------

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Deliver records to the rings and the bus on `loop`'s thread (call it on that thread)."""
        self._loop = loop
        self._loop_thread = threading.get_ident()

    def install(self, logger: logging.Logger | None = None) -> None:
        """Bind to the running loop and attach to `logger` (the root logger by default)."""
        self.bind(asyncio.get_running_loop())
        target = logger if logger is not None else logging.getLogger()
        target.addHandler(self)
        self._installed_on = target

    def remove(self) -> None:
        """Detach from the logger and the loop; the history stays readable."""
        if self._installed_on is not None:
            self._installed_on.removeHandler(self)
            self._installed_on = None
        self._loop = None
        self._loop_thread = None

    # -- logging.Handler -----------------------------------------------------------------------

    def emit(self, record: logging.LogRecord) -> None:
        if self._direct and record.name == CHILD_LOGGER:
            return  # model_line() already has it
        if getattr(self._busy, "active", False):
            self.dropped += 1  # logged from inside this handler: recursing could never end
            return
        self._busy.active = True
        try:
            entry = self._entry(record)
            loop = self._loop
            if loop is None:
                self._file(entry)  # not serving (yet): keep it, there is no one to publish to
            elif threading.get_ident() == self._loop_thread:
                self._deliver(entry)
            else:
                try:
                    loop.call_soon_threadsafe(self._deliver, entry)
                except RuntimeError:  # the loop is closed: nobody is left to show it to
                    self.dropped += 1
        except Exception:
            self.handleError(record)
        finally:
            self._busy.active = False

    def _entry(self, record: logging.LogRecord) -> LogLine:
        message = record.getMessage()
        if record.exc_info or record.stack_info:
            message = self.format(record).split(": ", 1)[-1]  # with the traceback
        model = getattr(record, "model", None) if record.name == CHILD_LOGGER else None
        stamp = (record.created, record.levelname, record.name, message)
        if not isinstance(model, str):
            return LogLine(*stamp)
        prefix = f"{model} | "
        output = message[len(prefix) :] if message.startswith(prefix) else message
        return LogLine(*stamp, model, output)

    def model_line(self, model: str, line: str) -> None:
        """A line a model's child printed, handed over by the process layer (on the loop's
        thread) without a LogRecord: it is most of swapd's log traffic, and making records it
        would only have dropped was a third of swapd's CPU per request under load."""
        self._direct = True
        entry = LogLine(time.time(), "INFO", CHILD_LOGGER, f"{model} | {line}", model, line)
        if self._loop is None:
            self._file(entry)
        else:
            self._deliver(entry)

    def _file(self, entry: LogLine) -> None:
        self._lines.append(entry)
        if entry.model is not None and entry.output is not None:
            ring = self._models.get(entry.model)
            if ring is None:
                ring = self._models[entry.model] = deque(maxlen=self._model_capacity)
            ring.append(entry.output)

    def _deliver(self, entry: LogLine) -> None:
        """On the loop's thread: file the line and publish it."""
        self._file(entry)
        bus = self.bus
        if bus is not None and bus.wants("log"):
            data: dict[str, str | None] = {"model": entry.model, "line": entry.line}
            if entry.output is not None:
                data["output"] = entry.output
            active = getattr(self._busy, "active", False)
            self._busy.active = True  # a log call made while publishing must not come back here
            try:
                bus.publish("log", data)
            except Exception:  # the bus promises not to raise; a log line is not worth a crash
                self.dropped += 1
            finally:
                self._busy.active = active

    # -- reading -------------------------------------------------------------------------------

    def history(self, model: str | None = None) -> list[str]:
        """The combined log (model None), or one model's output lines; oldest first."""
        if model is None:
            return [e.line for e in self._lines]
        return list(self._models.get(model, ()))

    def entries(self) -> Iterator[LogLine]:
        """The combined log with each line's model, oldest first."""
        return iter(list(self._lines))

    def models(self) -> list[str]:
        """Models that have printed anything, sorted."""
        return sorted(self._models)
