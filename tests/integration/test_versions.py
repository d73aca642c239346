"""Running instances finish on the version they started with."""

from __future__ import annotations

import json
from typing import Any

import nats

from saga.client import find_instance, instance_store
from saga.definition import Catalog, parse_definition
from saga.engine import Engine
from saga.nats.server import EmbeddedServer
from saga.nats.topology import Topology
from tests.integration.test_engine import FAST
from tests.support import ScriptedParticipant, wait_for
from tests.unit.test_versions import V1, V2


async def test_old_instances_keep_their_version_new_ones_take_the_newest(
    nats_server: EmbeddedServer,
) -> None:
    nc = await nats.connect(nats_server.url)
    js = nc.jetstream()
    hold = {"charge": True}

    def charge(
        payload: dict[str, Any], headers: dict[str, str]
    ) -> tuple[str, dict[str, Any]] | None:
        return None if hold["charge"] and headers["Saga-Id"] == "old" else ("pay.charged", {})

    # v1 and v2 together, so the stream captures every subject of both from the start
    first = Engine(nc, Catalog([parse_definition(V1)]), FAST)
    await first.start()
    await Engine(nc, Catalog([parse_definition(V1), parse_definition(V2)]), FAST).provision()
    participant = await ScriptedParticipant(
        nc,
        {
            "stock.reserve": lambda p, h: ("stock.reserved", {}),
            "pay.charge": charge,
            "ship.book": lambda p, h: ("ship.booked", {}),
        },
    ).start()
    await js.publish("shop.ordered", b"{}", headers={"Saga-Id": "old"})
    store = await instance_store(js, Topology())

    async def charging(saga_id: str) -> bool:
        state = await find_instance(store, saga_id, "shop")
        return state is not None and state.steps["charge"].status.value == "active"

    await wait_for(lambda: charging("old"), message="the old instance to wait for its charge")
    await first.stop()

    second = Engine(nc, Catalog([parse_definition(V1), parse_definition(V2)]), FAST)
    await second.start()
    try:
        await js.publish("shop.ordered", b"{}", headers={"Saga-Id": "new"})
        hold["charge"] = False
        await js.publish(
            "pay.charged",
            json.dumps({}).encode(),
            headers={"Saga-Id": "old", "Saga-Name": "shop", "Saga-Step": "charge"},
        )

        async def both_completed() -> bool:
            states = [await find_instance(store, i, "shop") for i in ("old", "new")]
            return all(s is not None and s.status.value == "completed" for s in states)

        await wait_for(both_completed, message="both instances to complete")
        old = await find_instance(store, "old", "shop")
        new = await find_instance(store, "new", "shop")
        assert old is not None
        assert new is not None
        assert (old.saga_version, list(old.steps)) == (1, ["reserve", "charge"])
        assert (new.saga_version, list(new.steps)) == (2, ["reserve", "charge", "ship"])
        assert ("ship.book", "step") not in participant.commands("old")
        assert ("ship.book", "step") in participant.commands("new")
    finally:
        await participant.stop()
        await second.stop()
        await nc.close()
