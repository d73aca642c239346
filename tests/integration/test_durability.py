"""The durability settings docs/reliability.md describes are the ones in force."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from saga.nats.provision import StreamSettings
from saga.nats.server import EmbeddedServer, free_port


def jetstream_config(tmp_path: Path, **options: Any) -> dict[str, Any]:
    port = free_port()
    server = EmbeddedServer(store_dir=tmp_path / "nats", extra_args=["-m", str(port)], **options)
    with server, urllib.request.urlopen(f"http://127.0.0.1:{port}/varz", timeout=5) as response:
        config: dict[str, Any] = json.load(response)["jetstream"]["config"]
    return config


def test_the_server_default_syncs_to_disk_every_two_minutes(tmp_path: Path) -> None:
    config = jetstream_config(tmp_path)
    assert config["sync_interval"] == 120 * 10**9  # nanoseconds
    assert not config.get("sync_always", False)


def test_sync_interval_always_fsyncs_every_write(tmp_path: Path) -> None:
    assert jetstream_config(tmp_path, sync_interval="always")["sync_always"] is True


def test_sync_interval_cannot_be_set_twice(tmp_path: Path) -> None:
    server = EmbeddedServer(store_dir=tmp_path, sync_interval="always", extra_args=["-c", "x"])
    with pytest.raises(ValueError, match="config file"):
        server.start()


def test_stream_defaults_are_file_storage_with_one_replica() -> None:
    settings = StreamSettings()
    assert settings.storage.value == "file"
    assert settings.replicas == 1
    assert settings.duplicate_window == 120.0
