"""A changed definitions folder is picked up without a restart; a broken one is refused."""

from __future__ import annotations

import logging
from pathlib import Path

import nats
import pytest

from saga.client import find_instance, instance_store
from saga.definition import load_catalog
from saga.engine import Engine
from saga.engine.process import watch_definitions
from saga.nats.server import EmbeddedServer
from saga.nats.topology import Topology
from tests.integration.test_engine import FAST
from tests.support import ScriptedParticipant, wait_for
from tests.unit.test_versions import V1, V2


async def test_new_version_is_loaded_and_a_broken_file_is_refused(
    nats_server: EmbeddedServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "defs"
    folder.mkdir()
    (folder / "shop-v1.yaml").write_text(V1)
    nc = await nats.connect(nats_server.url)
    engine = Engine(nc, load_catalog([folder]), FAST)
    await engine.start()
    watcher = watch_definitions(engine, folder)
    participant = await ScriptedParticipant(
        nc,
        {
            "stock.reserve": lambda p, h: ("stock.reserved", {}),
            "pay.charge": lambda p, h: ("pay.charged", {}),
        },
    ).start()
    try:
        (folder / "broken.yaml").write_text("name: [unclosed\n")
        with caplog.at_level(logging.ERROR, logger="saga.reload"):
            assert await watcher.check() is False
        assert "definitions not reloaded" in caplog.text
        assert [d.version for d in engine.catalog] == [1]

        (folder / "broken.yaml").unlink()
        (folder / "shop-v2.yaml").write_text(V2)
        assert await watcher.check() is True
        assert [(d.name, d.version) for d in engine.catalog] == [("shop", 1), ("shop", 2)]

        changed = V1.replace("stock.reserved", "stock.held")
        (folder / "shop-v1.yaml").write_text(changed)
        assert await watcher.check() is False  # same version, new content: refused
        (folder / "shop-v1.yaml").write_text(V1)

        await nc.jetstream().publish("shop.ordered", b"{}", headers={"Saga-Id": "after-reload"})
        store = await instance_store(nc, Topology())

        async def on_v2() -> bool:
            state = await find_instance(store, "after-reload", "shop")
            return state is not None and state.saga_version == 2 and "ship" in state.steps

        await wait_for(on_v2, message="a new instance on version 2")
    finally:
        await participant.stop()
        await engine.stop()
        await nc.close()
