"""The real llama-server binary of the end-to-end tier, for the packaging tests that run one."""

from __future__ import annotations

from tests.e2e.conftest import llama_server_bin

__all__ = ["llama_server_bin"]
