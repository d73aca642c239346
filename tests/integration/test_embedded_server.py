from __future__ import annotations

import socket
from pathlib import Path

import nats
import pytest

import saga.nats.server as server_module
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


def test_a_port_taken_between_picking_and_binding_does_not_lead_clients_astray(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A free port picked before the server binds it can be taken in between (other test
    runs on the machine do); if the taker listens, the server exits and its URL reaches
    the other process. Here ``free_port`` hands out a port that something already listens
    on: the server must still come up on a port of its own, and be what its URL reaches."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        monkeypatch.setattr(server_module, "free_port", lambda host="": taken.getsockname()[1])
        server = EmbeddedServer(store_dir=tmp_path / "nats").start()
        try:
            assert server.port != taken.getsockname()[1]
            assert server.process is not None
            assert server.process.poll() is None  # it did not exit: the port is its own
            with socket.create_connection((server.host, server.port), 2) as sock:
                sock.settimeout(2)
                assert sock.recv(4).startswith(b"INFO")  # a nats-server greets first
        finally:
            server.close()
