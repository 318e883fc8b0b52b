"""LogHub: bounded rings, routing of model output, thread hand-over, no recursion, never raises."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from swapd.obs.bus import EventBus
from swapd.obs.logs import CHILD_LOGGER, LogHub


def _record(msg: str, *args: object, name: str = "swapd.test", **extra: Any) -> logging.LogRecord:
    return logging.makeLogRecord(
        {"name": name, "levelno": logging.INFO, "levelname": "INFO", "msg": msg, "args": args}
        | extra
    )


def _child(model: str, line: str) -> logging.LogRecord:
    # What swapd.process.output logs for each line a child prints.
    return _record("%s | %s", model, line, name=CHILD_LOGGER, model=model)


@pytest.fixture
def private_logger() -> Iterator[logging.Logger]:
    logger = logging.getLogger("swapd.test.logs")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    yield logger
    logger.handlers.clear()
    logger.propagate = True


def test_combined_ring_is_bounded_and_formatted_like_stderr() -> None:
    hub = LogHub(capacity=3)
    for i in range(5):
        hub.handle(_record("line %d", i))
    lines = hub.history()
    assert len(lines) == 3
    assert [line.rsplit(" ", 1)[1] for line in lines] == ["2", "3", "4"]
    assert " INFO    swapd.test: line 4" in lines[-1]


def test_model_output_goes_to_its_model_ring_and_the_combined_log() -> None:
    hub = LogHub(model_capacity=2)
    hub.handle(_child("org/m:7b", "a | with a bar"))
    hub.handle(_record("swapd says hi"))
    hub.handle(_child("other", "x"))
    hub.handle(_child("org/m:7b", "b"))
    hub.handle(_child("org/m:7b", "c"))
    assert hub.history("org/m:7b") == ["b", "c"]
    assert hub.history("other") == ["x"]
    assert hub.history("never-ran") == []
    assert hub.models() == ["org/m:7b", "other"]
    combined = hub.history()
    assert len(combined) == 5
    assert combined[0].endswith("swapd.child: org/m:7b | a | with a bar")
    assert [e.model for e in hub.entries()] == ["org/m:7b", None, "other", "org/m:7b", "org/m:7b"]


def test_model_attribute_counts_only_on_the_child_logger() -> None:
    hub = LogHub()
    hub.handle(_record("unrelated", model="m"))
    hub.handle(_record("no model attribute", name=CHILD_LOGGER))
    assert hub.models() == []
    assert len(hub.history()) == 2


async def test_each_line_is_published_as_a_log_notice() -> None:
    bus = EventBus()
    hub = LogHub(bus)
    hub.bind(asyncio.get_running_loop())
    sub = bus.subscribe()
    hub.handle(_child("m", "loaded"))
    hub.handle(_record("hello"))
    bus.close()
    got = [n async for n in sub]
    assert [n.kind for n in got] == ["log", "log"]
    assert got[0].data["model"] == "m"
    assert got[0].data["output"] == "loaded"
    assert got[0].data["line"].endswith("swapd.child: m | loaded")
    assert got[1].data["model"] is None
    assert "output" not in got[1].data
    assert got[1].data["line"].endswith("swapd.test: hello")


def test_without_a_loop_lines_are_kept_but_not_published() -> None:
    bus = EventBus()
    sub = bus.subscribe()
    hub = LogHub(bus)
    hub.handle(_record("before serve"))
    assert len(hub.history()) == 1
    assert bus.last_seq == 0
    sub.close()


async def test_install_and_remove(private_logger: logging.Logger) -> None:
    hub = LogHub(EventBus())
    hub.install(private_logger)
    private_logger.info("seen %s", "once")
    hub.remove()
    private_logger.info("not seen")
    assert [line.split(": ", 1)[1] for line in hub.history()] == ["seen once"]
    assert hub not in private_logger.handlers


class _ThreadRecordingBus(EventBus):
    def __init__(self) -> None:
        super().__init__()
        self.threads: list[int] = []

    def publish(self, kind: str, data: Mapping[str, Any]) -> None:
        self.threads.append(threading.get_ident())
        super().publish(kind, data)


async def test_a_line_from_another_thread_is_handed_to_the_loop_thread(
    private_logger: logging.Logger,
) -> None:
    bus = _ThreadRecordingBus()
    hub = LogHub(bus)
    hub.install(private_logger)
    sub = bus.subscribe()
    try:
        thread = threading.Thread(target=private_logger.warning, args=("from the nvml thread",))
        thread.start()
        thread.join()
        # Nothing was touched on that thread: the line arrives with the loop's next turn.
        assert hub.history() == []
        assert bus.threads == []
        notice = await asyncio.wait_for(sub.get(), 2)
        assert notice is not None
        assert notice.data["line"].endswith("from the nvml thread")
        assert hub.history() == [notice.data["line"]]
        assert bus.threads == [threading.get_ident()]
    finally:
        hub.remove()
        sub.close()


async def test_many_threads_at_once_lose_nothing(private_logger: logging.Logger) -> None:
    hub = LogHub(EventBus(), capacity=10_000)
    hub.install(private_logger)
    try:

        def spam(n: int) -> None:
            for i in range(200):
                private_logger.info("t%d %d", n, i)

        threads = [threading.Thread(target=spam, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        spam(99)
        for t in threads:
            t.join()
        async with asyncio.timeout(5):
            while len(hub.history()) < 1000:  # noqa: ASYNC110  (the hand-overs are callbacks)
                await asyncio.sleep(0.001)
        assert len(hub.history()) == 1000
        for n in range(4):
            mine = [line for line in hub.history() if f": t{n} " in line]
            assert [int(line.rsplit(" ", 1)[1]) for line in mine] == list(range(200))
    finally:
        hub.remove()


def test_a_line_after_the_loop_closed_is_dropped_quietly() -> None:
    hub = LogHub(EventBus())
    loop = asyncio.new_event_loop()
    hub.bind(loop)
    loop.close()
    thread = threading.Thread(target=hub.handle, args=(_record("too late"),))
    thread.start()
    thread.join()
    assert hub.dropped == 1
    assert hub.history() == []


class _LoggingBus(EventBus):
    """A bus whose publish logs: the handler must not come back into itself."""

    def __init__(self, logger: logging.Logger) -> None:
        super().__init__()
        self.logger = logger

    def publish(self, kind: str, data: Mapping[str, Any]) -> None:
        self.logger.warning("publishing %s", data.get("line"))
        super().publish(kind, data)


async def test_a_log_call_from_inside_the_handler_does_not_recurse(
    private_logger: logging.Logger,
) -> None:
    bus = _LoggingBus(private_logger)
    bus.subscribe(("log",))
    hub = LogHub(bus)
    hub.install(private_logger)
    try:
        private_logger.info("outer")
    finally:
        hub.remove()
    assert len(hub.history()) == 1
    assert hub.history()[0].endswith("outer")
    assert hub.dropped == 1
    assert bus.last_seq == 1


class _BrokenBus(EventBus):
    def publish(self, kind: str, data: Mapping[str, Any]) -> None:
        raise RuntimeError("broken bus")


async def test_the_handler_never_raises_into_the_caller(
    private_logger: logging.Logger, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(logging, "raiseExceptions", False)
    bus = _BrokenBus()
    bus.subscribe(("log",))
    hub = LogHub(bus)
    hub.install(private_logger)
    try:
        private_logger.info("the bus is broken")  # no exception
        private_logger.info("bad format %d", "not a number")  # logging's own handleError
    finally:
        hub.remove()
    assert len(hub.history()) == 1
    assert hub.dropped == 1


async def test_lines_are_not_published_while_nobody_listens_for_them(
    private_logger: logging.Logger,
) -> None:
    bus = EventBus()
    others = bus.subscribe(("model",))
    hub = LogHub(bus)
    hub.install(private_logger)
    try:
        private_logger.info("quiet")
        listener = bus.subscribe(("log",))
        private_logger.info("heard")
    finally:
        hub.remove()
    assert hub.history()[-2].endswith("quiet")  # kept for /logs either way
    assert bus.last_seq == 1
    assert (await listener.get()).data["line"].endswith("heard")  # type: ignore[union-attr]
    others.close()


def test_capacities_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        LogHub(capacity=0)


async def test_model_lines_handed_over_directly_are_kept_once(
    private_logger: logging.Logger,
) -> None:
    hub = LogHub(EventBus())
    hub.install(private_logger)
    try:
        hub.model_line("m", "loaded")
        # The same line through logging (stderr at info) must not be kept a second time.
        hub.handle(_record("%s | %s", "m", "loaded", name=CHILD_LOGGER, model="m"))
    finally:
        hub.remove()
    assert hub.history("m") == ["loaded"]
    assert len(hub.history()) == 1
    assert hub.history()[0].endswith(" INFO    swapd.child: m | loaded")
