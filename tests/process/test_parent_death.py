"""No child outlives swapd, even when swapd itself is SIGKILLed (no cleanup code runs)."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import psutil

from tests.process.conftest import alive, fake_spec, wait_gone

REPO = Path(__file__).resolve().parents[2]

PARENT = """
import asyncio, json, sys
from swapd.config.model import ModelSpec
from swapd.process.supervisor import ModelProcess

async def main():
    fields = json.loads(sys.argv[1])
    spec = ModelSpec(**{**fields, "argv": tuple(fields["argv"])})
    mp = ModelProcess(spec, start_timeout_s=30)
    await mp.start()
    print(mp.pid, flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


async def test_child_dies_when_its_parent_is_sigkilled(tmp_path: Path) -> None:
    spec = fake_spec()
    fields = {"id": spec.id, "cmd": spec.cmd, "argv": list(spec.argv), "proxy": spec.proxy}
    script = tmp_path / "parent.py"
    script.write_text(PARENT)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    parent = await asyncio.create_subprocess_exec(
        sys.executable,
        str(script),
        json.dumps(fields),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        env=env,
    )
    child: psutil.Process | None = None
    try:
        assert parent.stdout is not None
        async with asyncio.timeout(30):
            line = await parent.stdout.readline()
        child = psutil.Process(int(line))
        assert alive(child)
        assert child.ppid() == parent.pid

        parent.kill()
        async with asyncio.timeout(10):
            await parent.wait()
        await wait_gone([child])
    finally:
        if parent.returncode is None:
            parent.kill()
            await parent.wait()
        if child is not None and alive(child):
            child.kill()
