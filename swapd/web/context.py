"""What the handlers share, stored on the application under typed keys."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

from aiohttp import web

from swapd.config.model import Config
from swapd.obs.hub import Observer
from swapd.web.openai import Catalog
from swapd.web.ports import RouterPort
from swapd.web.upstream import UpstreamPool


@dataclass(slots=True)
class WebContext:
    router: RouterPort
    created: int
    """Unix time the app was built; the `created` of every /v1/models record."""
    config: Config
    catalog: Catalog
    api_keys: tuple[bytes, ...]
    obs: Observer
    session_secret: bytes = field(default_factory=lambda: secrets.token_bytes(32))
    """Signs the `swapd_key` login cookie (swapd.web.auth); new each start, so a restart logs
    every browser out."""

    @classmethod
    def build(
        cls, config: Config, router: RouterPort, created: int, obs: Observer | None = None
    ) -> WebContext:
        obs = obs if obs is not None else Observer(tuple(config.models))
        return cls(router, created, config, Catalog(config), cls._keys(config), obs)

    def use_config(self, config: Config) -> None:
        """Serve by a reloaded config. The body size limit stays the one the app was built with."""
        self.config = config
        self.catalog = Catalog(config)
        self.api_keys = self._keys(config)

    @staticmethod
    def _keys(config: Config) -> tuple[bytes, ...]:
        return tuple(key.encode() for key in config.api_keys)


CONTEXT = web.AppKey("swapd.web.context", WebContext)
SESSION = web.AppKey("swapd.web.session", UpstreamPool)
"""The one connection pool for all upstream traffic (created and closed by a cleanup_ctx)."""
