"""A participant's probes over HTTP: ``GET /healthz`` (the process answers) and
``GET /readyz`` (connected to NATS and consuming), for Kubernetes and compose.

Off unless an address is given (``--health HOST:PORT`` or ``SAGA_HEALTH_ADDR``); it binds
to loopback when only ``:PORT`` is given, like the engine's admin API. aiohttp's server is
imported only when the probes start, so a participant without them never loads it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from saga.address import AdminSettings

if TYPE_CHECKING:
    from aiohttp import web
    from nats.aio.client import Client

log = logging.getLogger("saga.participant")

HEALTH_ENV = "SAGA_HEALTH_ADDR"


class HealthServer:
    def __init__(self, nc: Client, consuming: Callable[[], bool], address: AdminSettings) -> None:
        self.nc = nc
        self.consuming = consuming
        self.address = address
        self.url: str | None = None
        self._runner: web.AppRunner | None = None

    async def start(self) -> str:
        from aiohttp import web

        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.address.host, self.address.port)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://{self.address.host}:{port}"
        log.info("health probes on %s", self.url)
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _healthz(self, _: web.Request) -> web.Response:
        from aiohttp import web

        return web.json_response({"status": "ok"})

    async def _readyz(self, _: web.Request) -> web.Response:
        from aiohttp import web

        reasons = []
        if not self.nc.is_connected:
            reasons.append("not connected to NATS")
        if not self.consuming():
            reasons.append("not consuming (waiting for the engine's streams, or stopping)")
        if reasons:
            return web.json_response({"status": "not ready", "reasons": reasons}, status=503)
        return web.json_response({"status": "ready"})
