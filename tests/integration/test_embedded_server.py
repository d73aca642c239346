from __future__ import annotations

import nats

from saga.nats.server import EmbeddedServer


async def test_embedded_server_runs_jetstream(nats_server: EmbeddedServer) -> None:
    nc = await nats.connect(nats_server.url)
    js = nc.jetstream()
    await js.add_stream(name="T", subjects=["t.>"])
    ack = await js.publish("t.x", b"hi")
    assert ack.seq == 1
    await nc.close()
