"""ModelProcess against real subprocesses of the fake upstream (tests/fakes/fake_upstream.py)."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import sys
import time

import aiohttp
import psutil
import pytest

from swapd.config.model import ModelSpec
from swapd.core.state import ModelState
from swapd.errors import ProcessStartError
from tests.process.conftest import MakeProcess, alive, fake_spec, tree, wait_gone, wait_until


def _messages(caplog: pytest.LogCaptureFixture, needle: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if needle in r.getMessage()]


async def test_start_becomes_ready_serves_and_stop_ends_the_child(
    make_process: MakeProcess, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    spec = fake_spec(model="alpha")
    mp = make_process(spec)
    assert (mp.state, mp.pid, mp.generation) == (ModelState.STOPPED, None, 0)

    assert await mp.start() == 1
    assert mp.state is ModelState.READY
    assert mp.pid is not None
    child = psutil.Process(mp.pid)
    async with aiohttp.ClientSession() as http, http.get(spec.proxy + "/health") as resp:
        assert resp.status == 200
        assert (await resp.json())["served_by"] == "alpha"
    assert any(line.startswith("listening on http://127.0.0.1:") for line in mp.output())
    assert await mp.start() == 1, "a READY model is not started again"

    await mp.stop()
    assert (mp.state, mp.pid) == (ModelState.STOPPED, None)
    assert not alive(child)
    assert not _messages(caplog, "escalating"), "an idle child exits on SIGTERM"
    assert _messages(caplog, "model started model=alpha generation=1")
    await mp.stop()  # idempotent


async def test_child_output_triggers_the_next_readiness_poll(
    make_process: MakeProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    # With the backoff stretched to a minute, only the child's "listening on" line can make the
    # poll that sees it ready happen before the 10 s start timeout.
    monkeypatch.setattr("swapd.process.health.FIRST_DELAY_S", 60.0)
    monkeypatch.setattr("swapd.process.health.MAX_DELAY_S", 60.0)
    mp = make_process(fake_spec("--start-delay", "0.2"), start_timeout_s=10.0)
    assert await mp.start() == 1
    assert mp.state is ModelState.READY


async def test_concurrent_starts_share_one_spawn(
    make_process: MakeProcess, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    mp = make_process(fake_spec())
    assert list(await asyncio.gather(mp.start(), mp.start(), mp.start())) == [1, 1, 1]
    assert len(_messages(caplog, "model spawned")) == 1


async def test_one_cancelled_waiter_does_not_abort_a_shared_start(
    make_process: MakeProcess,
) -> None:
    mp = make_process(fake_spec())
    first = asyncio.create_task(mp.start())
    second = asyncio.create_task(mp.start())
    await wait_until(lambda: mp.pid is not None, what="spawn")
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    assert await second == 1
    assert mp.state is ModelState.READY


async def test_start_while_stopping_waits_for_the_stop_then_starts_afresh(
    make_process: MakeProcess,
) -> None:
    mp = make_process(fake_spec("--ignore-sigterm", unload_timeout_s=0.5))
    await mp.start()
    assert mp.pid is not None
    old = psutil.Process(mp.pid)
    stopping = asyncio.create_task(mp.stop())
    await wait_until(lambda: mp.state is ModelState.STOPPING, what="STOPPING")

    assert await mp.start() == 2
    assert stopping.done()
    assert not alive(old)
    assert mp.pid not in (None, old.pid)
    assert mp.state is ModelState.READY


async def test_child_exiting_before_ready_fails_the_start_at_once(
    make_process: MakeProcess,
) -> None:
    mp = make_process(fake_spec("--exit-on-start", "3"), start_timeout_s=120)
    # Well inside the 120 s start timeout: only the early-exit path can answer in time.
    async with asyncio.timeout(30):
        with pytest.raises(ProcessStartError) as err:
            await mp.start()
    message = str(err.value)
    assert "model 'm' exited with code 3 before it was ready; last output:" in message
    assert "  error: cannot load model" in message
    assert "  loading model m" in message
    assert (mp.state, mp.pid, mp.generation) == (ModelState.STOPPED, None, 1)


async def test_health_503_is_not_ready_yet(make_process: MakeProcess) -> None:
    mp = make_process(fake_spec("--health-503-for", "0.4"))
    assert await mp.start() == 1
    assert "health -> 503" in mp.output(), "the readiness loop saw the loading phase"
    assert mp.state is ModelState.READY


async def test_start_timeout_kills_the_child(make_process: MakeProcess) -> None:
    mp = make_process(fake_spec("--health-503-for", "600"), start_timeout_s=1.5)
    starting = asyncio.create_task(mp.start())
    await wait_until(lambda: mp.pid is not None, what="spawn")
    assert mp.pid is not None
    child = psutil.Process(mp.pid)
    with pytest.raises(ProcessStartError) as err:
        await starting
    assert "model 'm' did not become ready within 1.5 s (GET http://127.0.0.1:" in str(err.value)
    assert "/health, last answer: " in str(err.value)
    assert not alive(child)
    assert (mp.state, mp.pid) == (ModelState.STOPPED, None)


async def test_check_endpoint_none_is_ready_once_spawned(make_process: MakeProcess) -> None:
    # The fake would not listen for 60 s: readiness must not depend on it.
    mp = make_process(fake_spec("--start-delay", "60", check_endpoint=None))
    assert await mp.start() == 1
    assert mp.state is ModelState.READY
    assert mp.pid is not None
    child = psutil.Process(mp.pid)
    await mp.stop()
    assert not alive(child)


async def test_port_already_in_use_is_refused_without_spawning(make_process: MakeProcess) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        mp = make_process(fake_spec(port=port))
        with pytest.raises(ProcessStartError, match=f"port {port} on 127.0.0.1 is already in use"):
            await mp.start()
    assert (mp.state, mp.pid, mp.generation) == (ModelState.STOPPED, None, 0)


async def test_missing_executable_is_a_start_error(make_process: MakeProcess) -> None:
    spec = fake_spec()
    missing = "/nonexistent/llama-server"
    mp = make_process(ModelSpec(id="m", cmd=missing, argv=(missing,), proxy=spec.proxy))
    with pytest.raises(ProcessStartError, match="could not be started"):
        await mp.start()
    assert (mp.state, mp.generation) == (ModelState.STOPPED, 0)


async def test_sigterm_ignoring_child_is_sigkilled_after_the_timeout(
    make_process: MakeProcess, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    mp = make_process(fake_spec("--ignore-sigterm"))
    await mp.start()
    assert mp.pid is not None
    child = psutil.Process(mp.pid)
    async with asyncio.timeout(10):
        await mp.stop(timeout_s=0.3)
    assert not alive(child)
    assert _messages(caplog, "model stop escalating model=m")
    assert _messages(caplog, "rc=-9 method=sigterm")


async def test_stop_kills_grandchildren_in_the_group_and_escaped_ones(
    make_process: MakeProcess,
) -> None:
    # Both grandchildren ignore SIGTERM and hold the stdout/stderr pipes; one left the group.
    mp = make_process(fake_spec("--fork-child", "--fork-escapee"))
    await mp.start()
    assert mp.pid is not None
    procs = tree(mp.pid)
    assert len(procs) == 3
    async with asyncio.timeout(10):
        await mp.stop()
    await wait_gone(procs)


async def test_unexpected_exit_with_grandchild_holding_the_pipes_is_seen_at_once(
    make_process: MakeProcess,
) -> None:
    exits: list[tuple[int, str]] = []
    seen = asyncio.Event()

    def on_exit(generation: int, detail: str) -> None:
        exits.append((generation, detail))
        seen.set()

    mp = make_process(fake_spec("--fork-child"), on_unexpected_exit=on_exit)
    await mp.start()
    assert mp.pid is not None
    procs = tree(mp.pid)
    os.kill(mp.pid, signal.SIGKILL)
    async with asyncio.timeout(10):
        await seen.wait()
    assert [g for g, _ in exits] == [1]
    await wait_gone(procs)


async def test_cmd_stop_runs_with_the_pid(
    make_process: MakeProcess, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    script = (
        "import os, signal, sys\n"
        "print('cmdstop for', sys.argv[1], flush=True)\n"
        "os.kill(int(sys.argv[1]), signal.SIGKILL)\n"
    )
    # SIGTERM is ignored: only the stop command can end the child before the 30 s escalation.
    spec = fake_spec("--ignore-sigterm", stop_argv=(sys.executable, "-c", script, "${PID}"))
    mp = make_process(spec)
    await mp.start()
    pid = mp.pid
    assert pid is not None
    child = psutil.Process(pid)
    await mp.stop(timeout_s=30)
    assert f"cmdstop for {pid}" in mp.output()
    assert not alive(child)
    assert _messages(caplog, "method=cmd_stop")
    assert not _messages(caplog, "escalating")


async def test_failing_cmd_stop_falls_back_to_sigterm(
    make_process: MakeProcess, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    spec = fake_spec(stop_argv=(sys.executable, "-c", "raise SystemExit(2)"))
    mp = make_process(spec)
    await mp.start()
    assert mp.pid is not None
    child = psutil.Process(mp.pid)
    await mp.stop()
    assert not alive(child)
    assert _messages(caplog, "model stop command failed model=m")
    assert _messages(caplog, "method=sigterm")


async def test_output_ring_keeps_only_the_last_lines(make_process: MakeProcess) -> None:
    mp = make_process(fake_spec("--print-lines", "100"), output_lines=10)
    await mp.start()
    out = mp.output()
    assert len(out) == 10
    numbered = [line for line in out if line.startswith("line ")]
    assert numbered == [f"line {i}" for i in range(100 - len(numbered), 100)]
    assert numbered, "the newest printed lines are kept"
    assert any(line.startswith("listening on") for line in out)
    assert mp.output(3) == out[-3:]


async def test_unexpected_exit_reports_generation_and_stops(make_process: MakeProcess) -> None:
    exits: list[tuple[int, str]] = []
    seen = asyncio.Event()

    def on_exit(generation: int, detail: str) -> None:
        exits.append((generation, detail))
        seen.set()

    mp = make_process(fake_spec(), on_unexpected_exit=on_exit)
    await mp.start()
    assert mp.pid is not None
    os.kill(mp.pid, signal.SIGKILL)
    async with asyncio.timeout(10):
        await seen.wait()
    [(generation, detail)] = exits
    assert generation == 1
    assert "model 'm' was killed by signal SIGKILL; last output:" in detail
    assert "listening on" in detail
    assert (mp.state, mp.pid) == (ModelState.STOPPED, None)

    assert await mp.start() == 2
    await mp.stop()
    assert len(exits) == 1, "a requested stop is not an unexpected exit"


async def test_cancelling_start_kills_the_child(make_process: MakeProcess) -> None:
    mp = make_process(fake_spec("--start-delay", "60"), start_timeout_s=120)
    starting = asyncio.create_task(mp.start())
    await wait_until(lambda: mp.pid is not None, what="spawn")
    assert mp.pid is not None
    child = psutil.Process(mp.pid)
    starting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await starting
    assert not alive(child), "the child is gone by the time the cancellation arrives"
    assert (mp.state, mp.pid) == (ModelState.STOPPED, None)


async def test_stop_during_start_fails_the_start(make_process: MakeProcess) -> None:
    mp = make_process(fake_spec("--start-delay", "60"), start_timeout_s=120)
    starting = asyncio.create_task(mp.start())
    await wait_until(lambda: mp.pid is not None, what="spawn")
    assert mp.pid is not None
    child = psutil.Process(mp.pid)
    await mp.stop()
    with pytest.raises(ProcessStartError, match="was stopped before it was ready"):
        await starting
    assert not alive(child)
    assert (mp.state, mp.pid) == (ModelState.STOPPED, None)


async def test_close_ends_every_task_and_refuses_new_starts(make_process: MakeProcess) -> None:
    mp = make_process(fake_spec())
    await mp.start()
    await mp.close()
    ours = [t.get_name() for t in asyncio.all_tasks() if t.get_name().endswith(":m")]
    assert ours == []
    with pytest.raises(ProcessStartError, match="shut down"):
        await mp.start()


async def test_confirm_exit_tells_a_live_child_from_one_that_just_died(
    make_process: MakeProcess,
) -> None:
    mp = make_process(fake_spec(model="mortal"))
    await mp.start()
    assert await mp.confirm_exit(0.5) is False
    assert mp.pid is not None
    child = psutil.Process(mp.pid)
    os.kill(mp.pid, signal.SIGKILL)
    # Wait for it to die without yielding to the event loop, so swapd cannot notice yet (the
    # default asyncio loop reaps from a thread, uvloop only when its loop runs).
    deadline = time.monotonic() + 5
    while alive(child) and time.monotonic() < deadline:
        time.sleep(0.001)  # noqa: ASYNC251
    assert not alive(child)
    assert mp.state is ModelState.READY  # swapd has not noticed yet
    assert await mp.confirm_exit(5.0) is True  # so this waits for the reaping
    assert mp.state is not ModelState.READY


async def test_a_ready_child_that_stops_answering_is_killed_and_reported(
    make_process: MakeProcess,
) -> None:
    reported: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    mp = make_process(
        fake_spec(model="frozen"),
        on_unexpected_exit=lambda _gen, detail: reported.set_result(detail),
        liveness_interval_s=0.05,
    )
    await mp.start()
    assert mp.pid is not None
    child = psutil.Process(mp.pid)
    os.kill(mp.pid, signal.SIGSTOP)  # alive, but answers nothing: hung
    detail = await asyncio.wait_for(reported, 10)
    assert "stopped answering its health check" in detail
    assert "killed" in detail
    assert mp.state is ModelState.STOPPED
    await wait_gone([child], 5)
