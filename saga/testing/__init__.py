"""Test your saga definitions inside pytest: scripted participants, a clock you move, and
the exact sequence of published events to assert.

    from saga.testing import SagaHarness, fail, reply

    async def test_declined_payment_releases_stock() -> None:
        h = SagaHarness.from_file("definitions/order-fulfilment.yaml")
        h.on("inventory.reserve", reply("inventory.reserved", reservation_id="r1"))
        h.on("payment.charge", fail("payment.declined", "limit"))
        h.on("inventory.release", reply("inventory.released"))
        result = await h.run({"order_id": "o1", "items": [], "total": 5000})
        assert result.status == "compensated"

In memory by default; ``SagaHarness(..., nats=True)`` runs the same scenario on a real
nats-server with the real engine. See docs/testing.md.
"""

from saga.definition.subjects import Role
from saga.testing.answers import (
    Answer,
    Behaviour,
    NoAnswer,
    Reply,
    Responder,
    fail,
    no_reply,
    reply,
    sequence,
)
from saga.testing.errors import HarnessError, ScenarioTimeout, UnhandledCommand
from saga.testing.harness import SagaHarness
from saga.testing.result import SagaResult
from saga.testing.wire import DeadLettered, Message

__all__ = [
    "Answer",
    "Behaviour",
    "DeadLettered",
    "HarnessError",
    "Message",
    "NoAnswer",
    "Reply",
    "Responder",
    "Role",
    "SagaHarness",
    "SagaResult",
    "ScenarioTimeout",
    "UnhandledCommand",
    "fail",
    "no_reply",
    "reply",
    "sequence",
]
