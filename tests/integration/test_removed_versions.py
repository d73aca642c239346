"""A definition version that unfinished instances use cannot silently disappear.

Issue 12, defect 8: removing a version's file stranded its instances (timers
dead-lettered as ``engine-error``, instances ``running`` for ever, nothing logged).
Now a start without it is refused, naming the instances, and a reload that finds its
file gone keeps it loaded, logs an ERROR naming them and shows them in ``/readyz``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import aiohttp
import nats
import pytest

from saga.admin import AdminServer, AdminSettings
from saga.client import find_instance, instance_store
from saga.definition import load_catalog
from saga.engine import Engine
from saga.engine.process import watch_definitions
from saga.engine.versions import Stored, stranded
from saga.errors import ConfigError
from saga.nats.server import EmbeddedServer
from saga.nats.topology import Topology
from tests.integration.test_engine import FAST
from tests.support import wait_for
from tests.unit.test_versions import V1, V2


async def test_a_removed_version_in_use_is_kept_reported_and_refused_at_start(
    nats_server: EmbeddedServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "defs"
    folder.mkdir()
    (folder / "shop-v1.yaml").write_text(V1)
    nc = await nats.connect(nats_server.url)
    engine = Engine(nc, load_catalog([folder]), FAST)
    admin = AdminServer(engine.view(), AdminSettings(port=0))
    url = await admin.start()
    await engine.start()
    watcher = watch_definitions(engine, folder)
    try:
        js = nc.jetstream()
        await js.publish("shop.ordered", b"{}", headers={"Saga-Id": "on-v1"})
        store = await instance_store(nc, Topology())

        async def running() -> bool:
            state = await find_instance(store, "on-v1", "shop")
            return state is not None and state.status.value == "running"

        await wait_for(running, message="an instance running on version 1")

        (folder / "shop-v1.yaml").unlink()
        (folder / "shop-v2.yaml").write_text(V2)
        with caplog.at_level(logging.ERROR, logger="saga.reload"):
            assert await watcher.check() is True  # v2 added

        assert "shop v1: 1 unfinished instance(s) (on-v1)" in caplog.text
        assert [(d.name, d.version) for d in engine.catalog] == [("shop", 1), ("shop", 2)]
        async with aiohttp.ClientSession() as session, session.get(url + "/readyz") as r:
            ready = json.loads(await r.text())
        assert r.status == 200
        assert ready["stranded"] == [
            {"saga": "shop", "version": 1, "count": 1, "instances": ["on-v1"]}
        ]
    finally:
        await admin.stop()
        await engine.stop()

    restarted = Engine(nc, load_catalog([folder]), FAST)  # the folder has v2 only
    with pytest.raises(ConfigError, match=r"refusing to start.*shop v1: 1 unfinished.*on-v1"):
        await restarted.start()
    await restarted.stop()

    (folder / "shop-v1.yaml").write_text(V1)
    fixed = Engine(nc, load_catalog([folder]), FAST)
    await fixed.start()
    assert fixed.health().stranded == ()
    await fixed.stop()
    await nc.close()


def test_only_unfinished_instances_of_versions_not_loaded_count() -> None:
    instances = [
        Stored("shop", 1, "running", "a"),
        Stored("shop", 1, "parked", "b"),
        Stored("shop", 1, "compensated", "c"),
        Stored("shop", 2, "running", "d"),
        *(Stored("trip", 3, "compensating", f"t{i}") for i in range(12)),
    ]

    found = stranded({("shop", 2)}, instances)

    assert [(s.saga_name, s.saga_version, s.count) for s in found] == [
        ("shop", 1, 2),
        ("trip", 3, 12),
    ]
    assert found[0].saga_ids == ("a", "b")
    assert len(found[1].saga_ids) == 10
    assert found[1].describe().endswith(", ...)")


def test_finished_records_are_told_apart_without_parsing_and_ids_cannot_fool_it() -> None:
    from datetime import UTC, datetime

    from saga.core.state import InstanceState, Status
    from saga.engine.versions import _parse
    from saga.store import InstanceRecord

    now = datetime.now(UTC)

    def record(saga_id: str, status: Status) -> bytes:
        state = InstanceState(
            saga_id=saga_id,
            saga_name="shop",
            saga_version=3,
            status=status,
            started_at=now,
            updated_at=now,
        )
        return InstanceRecord(state=state).model_dump_json().encode()

    assert _parse(record("a", Status.COMPLETED)) is None
    assert _parse(record("b", Status.PARKED)) == Stored("shop", 3, "parked", "b")
    tricky = '","status":"completed'
    assert _parse(record(tricky, Status.RUNNING)) == Stored("shop", 3, "running", tricky)
    assert _parse(b"") is None
    assert _parse(b"not json") is None
