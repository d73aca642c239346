"""A participant's span says what became of the delivery (issue 13): a poison command's
last delivery is marked with its dead-letter code, not as one more redelivery."""

from __future__ import annotations

import nats
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from saga.definition import load_definitions
from saga.engine import Engine
from saga.nats.provision import StreamSettings
from saga.nats.server import EmbeddedServer
from saga.participant import ParticipantSettings
from saga.telemetry import Telemetry
from services import inventory, payment, shipping
from services.orders import new_order, place_orders
from tests.chaos.harness import DEFINITIONS as CHAOS_DEFINITIONS
from tests.integration.test_bad_input import FAST, dead_letters


async def test_a_dead_lettered_delivery_carries_the_dead_letter_code(
    nats_server: EmbeddedServer,
) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    fast = ParticipantSettings(stream=StreamSettings(ack_wait_backoff=(0.2, 0.4), max_deliver=3))
    client = await nats.connect(nats_server.url)
    engine = Engine(client, load_definitions([CHAOS_DEFINITIONS]), FAST)
    await engine.start()
    previous = payment.app.telemetry
    payment.app.telemetry = Telemetry.for_providers(provider)
    try:
        async with (
            inventory.app.running(client, fast),
            payment.app.running(client, fast),
            shipping.app.running(client, fast),
        ):
            js = client.jetstream()
            await place_orders(js, [new_order("poison-2", simulate={"payment": "crash"})])
            await dead_letters(js, 1)
    finally:
        payment.app.telemetry = previous
        await engine.stop()
        await client.close()
    spans = [s for s in exporter.get_finished_spans() if s.name == "process payment.charge"]
    found = sorted(
        (s.attributes["saga.delivery"], s.attributes["error.type"]) for s in spans if s.attributes
    )
    assert found == [(1, "redelivery"), (2, "redelivery"), (3, "handler-failed")]
    for span in spans:
        assert span.attributes is not None
        assert span.attributes["saga.id"] == "poison-2"
        assert span.attributes["saga.step"] == "charge_payment"
        assert span.attributes["saga.attempt"] == 1
