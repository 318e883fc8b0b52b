"""The operator UI at /ui, driven in headless Chromium (Debian's `chromium`, through Playwright).

swapd runs in-process with real llama-server children serving real tiny GGUF models; only the
GPU is fake (a simulated NVML, as in test_vram_e2e.py), so the GPU panel has something to draw
on machines without one. Chromium is the system's (`apt-get install chromium`): Playwright's
own browser download is never used. Missing chromium or playwright: skip, or fail when
SWAPD_REQUIRE_REAL=1 (make test, CI).

SWAPD_UI_SCREENSHOT=1 also writes docs/ui.png (the README's screenshot) with one model loaded.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import re
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import REPO_ROOT, llama_server_cmd, unavailable
from tests.fakes.fake_nvml import GIB, FakeGpu, FakeNvml
from tests.gpu.harness import chat, running_swapd

SCREENSHOT = REPO_ROOT / "docs" / "ui.png"
API_KEY = "ui-test-key"
READY_MS = 20_000
"""Bound on a model becoming ready (tiny models take ~20 ms; a loaded CI machine, more)."""
VIEWPORT = {"width": 1360, "height": 900}


@pytest.fixture(scope="session")
def chromium() -> str:
    path = shutil.which("chromium")
    if path is None:
        unavailable("chromium is not installed (apt-get install chromium)")
    if importlib.util.find_spec("playwright") is None:
        unavailable("playwright is not installed (pip install -e '.[test]')")
    return path


@asynccontextmanager
async def browser_page(chromium: str) -> AsyncIterator[tuple[Any, list[str]]]:
    """A fresh page, and the JavaScript errors it raised (checked to be none at the end)."""
    from playwright.async_api import async_playwright

    errors: list[str] = []
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=chromium, headless=True, args=["--disable-dev-shm-usage"]
        )
        try:
            context = await browser.new_context(viewport=VIEWPORT)
            page = await context.new_page()
            page.set_default_timeout(10_000)
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            # Console errors, but not the browser's own note on each 4xx (a wrong key's 401).
            page.on(
                "console",
                lambda msg: (
                    errors.append(msg.text)
                    if msg.type == "error" and not msg.text.startswith("Failed to load resource")
                    else None
                ),
            )
            yield page, errors
        finally:
            await browser.close()


def _model(name: str, bin_path: Path, gguf: Path, mib: int, extra: str = "") -> str:
    cmd = " ".join(llama_server_cmd(bin_path, gguf))
    return f"  {name}:\n    cmd: {cmd}\n    env: [FAKE_VRAM_MIB={mib}]\n{extra}"


def _config(tmp: Path, bin_path: Path, models: Path, top: str = "") -> Path:
    text = (
        "healthCheckTimeout: 20\n"
        "gpuPollInterval: 0.2\n"
        f"vramStateFile: {tmp / 'vram.json'}\n"
        f"{top}"
        "groups:\n"
        "  together:\n"
        "    swap: false\n"
        "    members: [tiny-a, tiny-b]\n"
        "models:\n"
        + _model(
            "tiny-a",
            bin_path,
            models / "tiny-a.gguf",
            6 * 1024,
            "    name: Tiny A\n    aliases: [alpha]\n    gpus: [0]\n",
        )
        + _model("tiny-b", bin_path, models / "tiny-b.gguf", 3 * 1024, "    gpus: [0]\n")
        + _model("tiny-c", bin_path, models / "tiny-c.gguf", 2 * 1024)
    )
    path = tmp / "swapd.yaml"
    path.write_text(text)
    return path


def _fake_gpu() -> FakeNvml:
    # Named for what it is: the README's screenshot shows it.
    gpu = FakeGpu(name="Simulated GPU (test fake)", total=24 * GIB, baseline=GIB, utilization=12)
    return FakeNvml(gpus=[gpu], live=True)


async def test_ui_loads_and_unloads_a_model_and_shows_its_logs(
    tmp_path: Path,
    llama_server_bin: Path,
    tiny_models: Path,
    chromium: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from playwright.async_api import expect

    # swapd's log hub sees what the root logger passes on: INFO, as the daemon's default.
    caplog.set_level(logging.INFO)

    config = _config(tmp_path, llama_server_bin, tiny_models)
    async with (
        running_swapd(config, _fake_gpu()) as (base, call),
        browser_page(chromium) as (page, errors),
    ):
        await page.goto(base + "/ui")
        assert page.url == base + "/ui/"
        state = page.get_by_test_id("state-tiny-a")
        await expect(state).to_have_text("stopped")
        await expect(page.get_by_test_id("state-tiny-b")).to_have_text("stopped")
        await expect(page.get_by_test_id("connection")).to_have_text("live")
        await expect(page.get_by_test_id("gpu-0")).to_contain_text("Simulated GPU")
        unload = page.get_by_role("button", name="Unload tiny-a", exact=True)
        await expect(unload).to_be_disabled()

        load = page.get_by_role("button", name="Load tiny-a", exact=True)
        await load.click()
        await expect(state).to_have_text("ready", timeout=READY_MS)
        await expect(page.get_by_test_id("announce")).to_have_text("tiny-a is ready")
        await expect(load).to_be_disabled()
        await expect(unload).to_be_enabled()
        swap = page.get_by_test_id("swap-row").first
        await expect(swap).to_contain_text("tiny-a")
        await expect(swap).to_contain_text("done")

        # The model's own output, streamed into the Logs panel.
        await page.get_by_label("Source").select_option(label="tiny-a")
        log = page.get_by_test_id("log")
        await expect(log).to_contain_text(re.compile(r"server is listening|model loaded"))
        await expect(page.get_by_test_id("log-status")).to_have_text("live")

        # A real request shows up in the activity table.
        status, _ = await call("POST", "/v1/chat/completions", {**chat("tiny-a"), "max_tokens": 8})
        assert status == 200
        row = page.get_by_test_id("activity-row").first
        await expect(row).to_contain_text("tiny-a")
        await expect(row).to_contain_text("/v1/chat/completions")
        await expect(page.get_by_test_id("queue-tiny-a")).to_have_text("0 / 0")
        # The fake GPU charges the child 6 GiB once NVML sees it: its segment and legend.
        await expect(page.get_by_test_id("gpu-0")).to_contain_text("tiny-a 6 GiB", timeout=10_000)
        # ... and swapd learns that footprint (no event says so; the page asks again).
        await expect(page.get_by_test_id("vram-tiny-a")).to_have_text(
            re.compile(r"^6 GiB\s*learned")
        )

        if os.environ.get("SWAPD_UI_SCREENSHOT", "") not in ("", "0"):
            await page.get_by_label("Source").select_option(label="all (swapd and models)")
            await expect(log).to_contain_text("tiny-a")
            await page.screenshot(path=str(SCREENSHOT), full_page=True)

        await unload.click()
        await expect(state).to_have_text("stopped", timeout=READY_MS)
        await expect(page.get_by_test_id("announce")).to_have_text("tiny-a is stopped")
        await expect(load).to_be_enabled()
        assert errors == []


async def test_ui_login_with_api_keys(
    tmp_path: Path, llama_server_bin: Path, tiny_models: Path, chromium: str
) -> None:
    from playwright.async_api import expect

    config = _config(tmp_path, llama_server_bin, tiny_models, top=f"apiKeys: [{API_KEY}]\n")
    # No GPU monitoring at all: the panel says so instead of drawing bars.
    async with (
        running_swapd(config, FakeNvml(missing=True)) as (base, _),
        browser_page(chromium) as (page, errors),
    ):
        await page.goto(base + "/ui/")
        await expect(page.get_by_test_id("login")).to_be_visible()
        await expect(page.get_by_test_id("models")).to_be_hidden()

        key = page.get_by_label("API key")
        await key.fill("not-the-key")
        await page.get_by_role("button", name="Log in").click()
        await expect(page.get_by_test_id("login-error")).to_have_text("Wrong API key.")
        await expect(page.get_by_test_id("models")).to_be_hidden()

        await key.fill(API_KEY)
        await page.get_by_role("button", name="Log in").click()
        await expect(page.get_by_test_id("state-tiny-a")).to_have_text("stopped")
        await expect(page.get_by_test_id("login")).to_be_hidden()
        # The event stream is authenticated by the login cookie (EventSource sends no headers).
        await expect(page.get_by_test_id("connection")).to_have_text("live")
        await expect(page.get_by_test_id("no-gpu")).to_contain_text("No NVIDIA GPU monitoring")

        await page.get_by_role("button", name="Load tiny-a", exact=True).click()
        await expect(page.get_by_test_id("state-tiny-a")).to_have_text("ready", timeout=READY_MS)

        # The cookie outlives a reload; logging out ends it.
        await page.reload()
        await expect(page.get_by_test_id("state-tiny-a")).to_have_text("ready")
        await page.get_by_role("button", name="Log out").click()
        await expect(page.get_by_test_id("login")).to_be_visible()
        await expect(page.get_by_test_id("models")).to_be_hidden()
        assert errors == []
