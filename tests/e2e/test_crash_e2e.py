"""A real llama-server that dies in the middle of a streamed answer."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from pathlib import Path

import aiohttp
import psutil

from swapd.gpu.nvml import NullMonitor
from tests.e2e.conftest import llama_server_cmd
from tests.gpu.harness import Request, running_swapd, write_config


def _llama_servers() -> list[int]:
    return [
        p.pid
        for p in psutil.Process().children(recursive=True)
        if "llama-server" in " ".join(p.cmdline())
    ]


async def _state(call: Request) -> str:
    running = (await call("GET", "/running"))[1]["running"]
    return str(running[0]["state"]) if running else "stopped"


async def test_child_killed_mid_stream_ends_the_stream_with_an_error_event_and_done(
    tmp_path: Path, llama_server_bin: Path, slow_model: Path
) -> None:
    cmd = " ".join(llama_server_cmd(llama_server_bin, slow_model))
    config = write_config(tmp_path, f"  slow:\n    cmd: {cmd}\n")
    body = {
        "model": "slow",
        "stream": True,
        "max_tokens": 2000,
        "messages": [{"role": "user", "content": "go"}],
    }
    async with (
        running_swapd(config, NullMonitor()) as (base, call),  # type: ignore[arg-type]
        aiohttp.ClientSession() as http,
    ):
        async with http.post(base + "/v1/chat/completions", json=body) as resp:
            assert resp.status == 200
            assert (await resp.content.readline()).startswith(b"data: ")
            (pid,) = _llama_servers()
            os.kill(pid, signal.SIGKILL)
            rest = (await asyncio.wait_for(resp.content.read(), 30)).decode()
        events = [e for e in rest.split("\n\n") if e.strip()]
        assert events[-1] == "data: [DONE]"
        error = json.loads(events[-2].removeprefix("data: "))["error"]
        assert "'slow'" in error["message"]
        # The very next request, even one sent before swapd has reaped the dead child, starts
        # the model again.
        status, _ = await call(
            "POST", "/v1/chat/completions", {**body, "stream": False, "max_tokens": 4}
        )
        assert status == 200
        assert _llama_servers() != [pid]
        assert await _state(call) == "ready"


async def test_crash_looping_model_backs_off_and_an_operator_reset_retries_it(
    tmp_path: Path, llama_server_bin: Path, tiny_models: Path
) -> None:
    cmd = " ".join(llama_server_cmd(llama_server_bin, tiny_models / "tiny-a.gguf"))
    config = write_config(tmp_path, f"  broken:\n    cmd: {cmd} --no-such-flag\n")
    chat = {"model": "broken", "messages": [{"role": "user", "content": "hi"}]}
    async with running_swapd(config, NullMonitor()) as (_, call):  # type: ignore[arg-type]
        messages = []
        for _ in range(3):
            status, body = await call("POST", "/v1/chat/completions", chat)
            assert status == 503
            messages.append(body["error"]["message"])
        # Two real starts failed with llama-server's own complaint; the third was not tried.
        assert "no-such-flag" in messages[0]
        assert "no-such-flag" in messages[1]
        assert "failed 2 times in a row; the next attempt may start in" in messages[2]
        assert (await call("POST", "/api/models/reset/broken"))[0] == 200
        status, body = await call("POST", "/v1/chat/completions", chat)
        assert status == 503
        assert "next attempt" not in body["error"]["message"]  # tried again at once


async def test_hung_llama_server_is_killed_and_the_next_request_restarts_it(
    tmp_path: Path, llama_server_bin: Path, tiny_models: Path
) -> None:
    cmd = " ".join(llama_server_cmd(llama_server_bin, tiny_models / "tiny-a.gguf"))
    config = write_config(
        tmp_path, f"  tiny:\n    cmd: {cmd}\n", livenessInterval=0.1, livenessTimeout=0.2
    )
    chat = {"model": "tiny", "max_tokens": 4, "messages": [{"role": "user", "content": "hi"}]}
    async with running_swapd(config, NullMonitor()) as (_, call):  # type: ignore[arg-type]
        assert (await call("POST", "/v1/chat/completions", chat))[0] == 200
        (pid,) = _llama_servers()
        os.kill(pid, signal.SIGSTOP)  # alive, answering nothing: hung
        async with asyncio.timeout(10):
            while await _state(call) == "ready":  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        (entry,) = (await call("GET", "/v1/models"))[1]["data"]
        assert entry["meta"]["swapd"]["state"] == "failed"
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
        assert (await call("POST", "/v1/chat/completions", chat))[0] == 200
        assert _llama_servers() != [pid]
