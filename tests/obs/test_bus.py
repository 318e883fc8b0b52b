"""EventBus: ordering, kind filters, bounded subscribers, shutdown."""

from __future__ import annotations

import asyncio

import pytest

from swapd.obs.bus import EventBus, Notice


def _seqs(notices: list[Notice]) -> list[int]:
    return [n.seq for n in notices]


async def test_subscriber_gets_notices_in_publish_order_with_rising_seq() -> None:
    bus = EventBus()
    sub = bus.subscribe()
    for i in range(5):
        bus.publish("model", {"i": i})
    bus.close()
    got = [n async for n in sub]
    assert [n.data["i"] for n in got] == [0, 1, 2, 3, 4]
    assert _seqs(got) == sorted(_seqs(got))
    assert len(set(_seqs(got))) == 5
    assert bus.last_seq == got[-1].seq


async def test_only_notices_published_after_subscribing_arrive() -> None:
    bus = EventBus()
    bus.publish("model", {"early": True})
    sub = bus.subscribe()
    bus.publish("model", {"early": False})
    bus.close()
    assert [n.data for n in [n async for n in sub]] == [{"early": False}]


async def test_kinds_filter_keeps_only_the_asked_kinds() -> None:
    bus = EventBus()
    sub = bus.subscribe(["queue", "gpu"])
    for kind in ("model", "queue", "log", "gpu", "swap"):
        bus.publish(kind, {})
    bus.close()
    assert [n.kind for n in [n async for n in sub]] == ["queue", "gpu"]


async def test_slow_subscriber_is_cut_off_and_others_are_not() -> None:
    bus = EventBus()
    slow = bus.subscribe(maxsize=3)
    fast = bus.subscribe(maxsize=100)
    for i in range(10):
        bus.publish("log", {"i": i})
    assert slow.lost
    assert not fast.lost
    assert bus.subscribers == 1
    got = [n async for n in slow]  # what it still had, then the end: no hang
    assert [n.data["i"] for n in got] == [1, 2], "the oldest made room for the end marker"
    bus.publish("log", {"i": 10})  # a cut-off subscriber gets nothing more
    assert await slow.get() is None
    bus.close()
    assert [n.data["i"] for n in [n async for n in fast]] == list(range(11))


async def test_close_ends_waiting_iteration() -> None:
    bus = EventBus()
    sub = bus.subscribe()
    got: list[Notice] = []

    async def consume() -> None:
        async for notice in sub:
            got.append(notice)

    task = asyncio.get_running_loop().create_task(consume())
    await asyncio.sleep(0)
    bus.publish("model", {"x": 1})
    bus.close()
    await asyncio.wait_for(task, 1)
    assert [n.data for n in got] == [{"x": 1}]
    assert bus.subscribers == 0


async def test_subscribe_after_close_is_already_ended() -> None:
    bus = EventBus()
    bus.close()
    sub = bus.subscribe()
    assert bus.subscribers == 0
    assert await asyncio.wait_for(sub.batch(), 1) == []
    assert await asyncio.wait_for(sub.get(), 1) is None


async def test_close_with_a_full_queue_still_ends_the_stream() -> None:
    bus = EventBus()
    sub = bus.subscribe(maxsize=2)
    bus.publish("a", {})
    bus.publish("a", {})
    bus.close()
    got = [n async for n in sub]
    assert len(got) == 1
    assert not sub.lost


async def test_unsubscribing_twice_and_closing_twice_is_harmless() -> None:
    bus = EventBus()
    sub = bus.subscribe()
    bus.publish("model", {})
    sub.close()
    sub.close()
    bus.close()
    bus.close()
    assert len([n async for n in sub]) == 1


async def test_batch_takes_what_is_queued_up_to_the_limit() -> None:
    bus = EventBus()
    sub = bus.subscribe()
    for i in range(5):
        bus.publish("log", {"i": i})
    assert [n.data["i"] for n in await sub.batch(limit=3)] == [0, 1, 2]
    bus.close()
    assert [n.data["i"] for n in await sub.batch()] == [3, 4]
    assert await sub.batch() == []


async def test_cancelled_get_loses_nothing() -> None:
    bus = EventBus()
    sub = bus.subscribe()
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.01):
            await sub.batch()
    bus.publish("model", {"after": True})
    assert [n.data for n in await sub.batch()] == [{"after": True}]


def test_recent_keeps_a_backlog_per_kind() -> None:
    bus = EventBus(backlog=3)
    bus.publish("model", {"m": 1})
    for i in range(10):
        bus.publish("log", {"i": i})
    recent = bus.recent()
    assert [n.kind for n in recent].count("log") == 3
    assert recent[0].data == {"m": 1}, "a chatty kind must not push the rare ones out"
    assert _seqs(recent) == sorted(_seqs(recent))
    assert [n.data for n in bus.recent(["model"])] == [{"m": 1}]


def test_subscription_needs_room_for_at_least_one_notice() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        EventBus().subscribe(maxsize=0)


def test_notice_as_json() -> None:
    bus = EventBus()
    bus.publish("swap", {"model": "a"})
    (notice,) = bus.recent()
    assert notice.as_json() == {"seq": 1, "kind": "swap", "at": notice.at, "data": {"model": "a"}}
