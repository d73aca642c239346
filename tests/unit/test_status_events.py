"""``status_events`` of a definition: which lifecycle events the engine announces.

Run in memory through the engine's own loop (``saga.testing``); ``all`` (the default)
is what ``test_examples_with_harness`` pins.
"""

from __future__ import annotations

import pytest

from saga.testing import SagaHarness, fail, no_reply, reply
from tests.conftest import DEFINITIONS

ORDER = (DEFINITIONS / "order-fulfilment.yaml").read_text()
PLACED = {"order_id": "o1", "customer_id": "c1", "items": [], "total": 40, "address": "1 Way"}


def shop(status_events: str | None, charge_fails: bool) -> SagaHarness:
    text = ORDER if status_events is None else f"{ORDER}\nstatus_events: {status_events}\n"
    h = SagaHarness.from_text(text)
    h.on("inventory.reserve", reply("inventory.reserved", reservation_id="r1"))
    charged = reply("payment.charged", payment_id="p1", amount=40)
    h.on("payment.charge", fail("payment.declined", "limit") if charge_fails else charged)
    h.on("shipping.schedule", reply("shipping.scheduled", tracking_id="tr1"))
    h.on("inventory.release", no_reply())  # parks the failed saga
    return h


@pytest.mark.parametrize(
    ("status_events", "completed", "parked"),
    [
        (None, ["completed"], ["parked"]),
        ("all", ["completed"], ["parked"]),
        ("final", ["completed"], []),
        ("none", [], []),
    ],
)
async def test_only_the_configured_lifecycle_events_are_announced(
    status_events: str | None, completed: list[str], parked: list[str]
) -> None:
    done = await shop(status_events, charge_fails=False).run(PLACED)
    stuck = await shop(status_events, charge_fails=True).run(PLACED)

    assert done.status == "completed"
    assert stuck.status == "parked"  # the outcome itself never depends on the setting
    assert [e.subject.rsplit(".", 1)[1] for e in done.status_events] == completed
    assert [e.subject.rsplit(".", 1)[1] for e in stuck.status_events] == parked


def test_an_unknown_level_is_refused() -> None:
    with pytest.raises(Exception, match="status_events"):
        SagaHarness.from_text(f"{ORDER}\nstatus_events: some\n")
