from __future__ import annotations

from pathlib import Path

import nats

from saga.nats.server import EmbeddedServer


async def test_embedded_server_runs_jetstream(nats_server: EmbeddedServer) -> None:
    nc = await nats.connect(nats_server.url)
    js = nc.jetstream()
    await js.add_stream(name="T", subjects=["t.>"])
    ack = await js.publish("t.x", b"hi")
    assert ack.seq == 1
    await nc.close()


def test_a_started_server_used_as_a_context_runs_once_and_stops(tmp_path: Path) -> None:
    """``with EmbeddedServer().start() as s`` (the idiom of ``LoopbackCluster``) must not
    start a second process and leave the first one running."""
    server = EmbeddedServer(store_dir=tmp_path / "nats").start()
    first = server.process
    assert first is not None
    with server as entered:
        assert entered.process is first
    assert first.poll() is not None, "the server outlived its context"
