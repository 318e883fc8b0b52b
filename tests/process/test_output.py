"""Line splitting and the bounded output ring (pure, no processes)."""

from __future__ import annotations

import logging

import pytest

from swapd.process.output import LineSplitter, OutputRing


def test_splitter_joins_chunks_into_lines() -> None:
    s = LineSplitter()
    assert s.feed(b"hel") == []
    assert s.feed(b"lo\nwor") == ["hello"]
    assert s.feed(b"ld\r\n\nx") == ["world", ""]
    assert s.flush() == ["x"]
    assert s.flush() == []


def test_splitter_cuts_runaway_lines_and_survives_bad_utf8() -> None:
    s = LineSplitter(max_line_bytes=4)
    assert s.feed(b"abcdefghij") == ["abcd", "efgh"]
    assert s.feed(b"\n\xff\xfeok\n") == ["ij", "\ufffd\ufffdok"]


def test_ring_keeps_the_last_lines_in_order(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="swapd.child")
    ring = OutputRing("qwen", capacity=3)
    for i in range(5):
        ring.add(f"line {i}")
    assert ring.tail() == ["line 2", "line 3", "line 4"]
    assert ring.tail(2) == ["line 3", "line 4"]
    assert ring.tail(10) == ring.tail()
    assert ring.tail(0) == []
    assert len(ring) == 3
    assert [r.getMessage() for r in caplog.records][-1] == "qwen | line 4"
    assert caplog.records[-1].name == "swapd.child"


def test_ring_needs_room_for_a_line() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        OutputRing("m", capacity=0)
