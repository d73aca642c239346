"""Connection settings and provisioning against a real server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import nats
import pytest
from nats.js.api import RetentionPolicy, StreamConfig
from pydantic import SecretStr

from saga.definition import load_definitions
from saga.engine import Engine
from saga.errors import ConnectionFailed, ProvisioningError
from saga.nats.connection import NatsSettings, connect
from saga.nats.server import EmbeddedServer
from tests.conftest import DEFINITIONS


@pytest.fixture
def token_server(tmp_path: Path) -> Iterator[EmbeddedServer]:
    server = EmbeddedServer(store_dir=tmp_path / "nats", extra_args=["--auth", "s3cret"]).start()
    yield server
    server.close()


@pytest.fixture
def user_server(tmp_path: Path) -> Iterator[EmbeddedServer]:
    args = ["--user", "saga", "--pass", "pw-123"]
    server = EmbeddedServer(store_dir=tmp_path / "nats", extra_args=args).start()
    yield server
    server.close()


async def test_token_auth(token_server: EmbeddedServer) -> None:
    nc = await connect(NatsSettings(url=token_server.url, token=SecretStr("s3cret")))
    assert nc.is_connected
    await nc.close()
    wrong = NatsSettings(url=token_server.url, token=SecretStr("wrong"), initial_connect_timeout=2)
    with pytest.raises(ConnectionFailed, match="Authorization Violation"):
        await connect(wrong)


async def test_user_password_auth(user_server: EmbeddedServer) -> None:
    settings = NatsSettings(url=user_server.url, user="saga", password=SecretStr("pw-123"))
    nc = await connect(settings)
    assert nc.is_connected
    await nc.close()


def test_secrets_are_masked_in_settings_text() -> None:
    settings = NatsSettings(password=SecretStr("pw-123"), token=SecretStr("tok"))
    assert "pw-123" not in repr(settings)
    assert "tok'" not in str(settings)


async def test_conflicting_existing_stream_is_refused(nats_server: EmbeddedServer) -> None:
    nc = await nats.connect(nats_server.url)
    js = nc.jetstream()
    await js.add_stream(
        StreamConfig(name="SAGA_EVENTS", subjects=["other.>"], retention=RetentionPolicy.WORK_QUEUE)
    )
    engine = Engine(nc, load_definitions([DEFINITIONS]))
    with pytest.raises(ProvisioningError, match="retention"):
        await engine.start()
    await nc.close()


async def test_provisioning_twice_is_harmless(nats_server: EmbeddedServer) -> None:
    nc = await nats.connect(nats_server.url)
    definitions = load_definitions([DEFINITIONS])
    for _ in range(2):
        engine = Engine(nc, definitions)
        await engine.start()
        await engine.stop()
    info = await nc.jetstream().stream_info("SAGA_EVENTS")
    assert "orders.placed" in (info.config.subjects or [])
    await nc.close()
