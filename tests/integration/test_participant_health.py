"""A participant's probes: alive at once, ready only once it consumes, over real HTTP."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import nats

from saga.admin import parse_address
from saga.definition import parse_definition
from saga.engine import Engine
from saga.nats.server import EmbeddedServer
from saga.participant import App, Context
from tests.support import wait_for

SAGA = parse_definition(
    """
name: shop
trigger: {event: shop.ordered, id: {field: id}}
steps:
  - {name: reserve, publish: {event: stock.reserve}, success: stock.reserved, timeout: 30s}
"""
)


async def status_of(url: str) -> int:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status


async def test_probes_say_alive_then_ready_once_the_streams_exist(
    nats_server: EmbeddedServer,
) -> None:
    app = App("inventory")

    @app.step("stock.reserve", success="stock.reserved")
    async def reserve(ctx: Context, payload: dict[str, Any]) -> dict[str, Any]:
        return {}

    nc = await nats.connect(nats_server.url)
    running = asyncio.create_task(app.run(nc, health=parse_address("127.0.0.1:0")))
    engine = Engine(await nats.connect(nats_server.url), {"shop": SAGA})
    try:
        await wait_for(lambda: app.health is not None and app.health.url is not None)
        assert app.health is not None
        url = app.health.url
        assert url is not None
        assert url.startswith("http://127.0.0.1:")
        assert await status_of(url + "/healthz") == 200
        assert await status_of(url + "/readyz") == 503  # no engine streams yet: waiting

        await engine.start()  # creates the streams the participant waits for

        async def ready() -> bool:
            return await status_of(url + "/readyz") == 200

        await wait_for(ready, message="the participant to report ready")
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        await engine.stop()
        await engine.nc.close()
        await nc.close()
