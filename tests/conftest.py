"""Shared fixtures: a real nats-server per test, on a free loopback port with a temp store."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client

from saga.nats.server import EmbeddedServer

# Engines started by tests (often several at once) bind their admin API to a free port.
os.environ.setdefault("SAGA_ADMIN_ADDR", "127.0.0.1:0")

ROOT = Path(__file__).resolve().parent.parent
DEFINITIONS = ROOT / "definitions"


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[EmbeddedServer]:
    server = EmbeddedServer(store_dir=tmp_path / "nats").start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
async def nc(nats_server: EmbeddedServer) -> AsyncIterator[Client]:
    client = await nats.connect(nats_server.url)
    try:
        yield client
    finally:
        await client.drain()
