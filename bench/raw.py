"""The baseline: the same 3-step choreography hand-written with plain nats-py.

No engine and no state: each service consumes the previous event from its own
durable pull consumer (explicit acks), publishes the next event and acks::

    bench.raw.orders.placed -> inventory -> bench.raw.inventory.reserved
                            -> payment   -> bench.raw.payment.charged
                            -> shipping  -> bench.raw.shipping.scheduled

Each service runs in a process of its own (``python -m bench.raw SERVICE --nats URL``),
as the engine's participants do. It does what a careful hand-written consumer
does: fetch in batches, publish the batch's events with ``publish_async`` (many
in flight), then ack. The stream has the engine's storage settings (file, one
replica, 2-minute duplicate window).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal

import nats
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, RetentionPolicy, StorageType, StreamConfig

from saga import jsonwire

STREAM = "BENCH_RAW"
PREFIX = "bench.raw"
TRIGGER = f"{PREFIX}.orders.placed"
FINAL = f"{PREFIX}.shipping.scheduled"
ID_HEADER = "Saga-Id"
SERVICES: dict[str, tuple[str, str, str]] = {
    "inventory": (TRIGGER, f"{PREFIX}.inventory.reserved", "reservation_id"),
    "payment": (f"{PREFIX}.inventory.reserved", f"{PREFIX}.payment.charged", "payment_id"),
    "shipping": (f"{PREFIX}.payment.charged", FINAL, "tracking_id"),
}
"""Service -> (subject consumed, subject published, field it adds)."""
FETCH_BATCH = 256


async def provision(js: JetStreamContext) -> None:
    """The stream and one durable consumer per service, with the engine's settings."""
    await js.add_stream(
        StreamConfig(
            name=STREAM,
            subjects=[f"{PREFIX}.>"],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            num_replicas=1,
            max_age=7 * 24 * 3600.0,
            duplicate_window=120.0,
        )
    )
    for service, (consumed, _, _) in SERVICES.items():
        await js.add_consumer(
            STREAM,
            ConsumerConfig(
                durable_name=f"raw-{service}",
                ack_policy=AckPolicy.EXPLICIT,
                filter_subject=consumed,
                backoff=[2.0, 4.0, 8.0, 16.0, 30.0],
                max_deliver=10,
                max_ack_pending=2000,
            ),
        )


async def serve(url: str, service: str) -> None:
    """Consume until SIGTERM/SIGINT, then finish the batch in hand and drain."""
    _, published, field = SERVICES[service]
    nc = await nats.connect(url, name=f"raw-{service}")
    js = nc.jetstream()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    sub = await js.pull_subscribe_bind(durable=f"raw-{service}", stream=STREAM)
    try:
        while not stop.is_set():
            try:
                msgs = await sub.fetch(FETCH_BATCH, timeout=1.0)
            except (TimeoutError, NatsTimeoutError):
                continue
            acks = []
            for msg in msgs:
                event = json.loads(msg.data)
                event[field] = f"{field}-{event['order_id']}"
                headers = {ID_HEADER: (msg.headers or {}).get(ID_HEADER, "")}
                acks.append(
                    await js.publish_async(published, jsonwire.dumps(event), headers=headers)
                )
            await asyncio.gather(*acks)
            for msg in msgs:
                await msg.ack()
    finally:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()
        with contextlib.suppress(Exception):
            await nc.drain()


def main() -> None:
    parser = argparse.ArgumentParser(description="One service of the raw JetStream baseline.")
    parser.add_argument("service", choices=sorted(SERVICES))
    parser.add_argument("--nats", required=True, metavar="URL")
    args = parser.parse_args()
    asyncio.run(serve(args.nats, args.service))


if __name__ == "__main__":
    main()
