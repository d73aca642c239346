"""A saga participant with nothing but nats-py: the inventory's reserve step.

It is what ``docs/protocol.md`` describes, written out: a durable pull consumer
on the engine's SAGA_EVENTS stream, a reply on the success or failure subject
with the saga headers copied, a ``Nats-Msg-Id`` so a resent reply is dropped by
the server, and the ack only after the reply is stored.

Without a reply ledger it stays idempotent by answering from the payload and
the idempotency key alone (the reservation id is derived from the key), so a
redelivered command gets the very same reply.

    python docs/examples/raw_participant.py --nats nats://127.0.0.1:4222 [--max-messages N]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
from typing import Any

import nats
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig

STREAM = "SAGA_EVENTS"
COMMAND = "inventory.reserve"
COPIED = (
    "Saga-Id",
    "Saga-Name",
    "Saga-Step",
    "Saga-Kind",
    "Saga-Attempt",
    "traceparent",
    "tracestate",
)


def answer(key: str, payload: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The business rule: SKUs starting with UNKNOWN are rejected."""
    for item in payload.get("items") or []:
        if str(item.get("sku", "")).startswith("UNKNOWN"):
            return "inventory.rejected", {"reason": "unknown-sku", "sku": item["sku"]}
    reservation = "res-" + hashlib.sha256(key.encode()).hexdigest()[:12]
    return "inventory.reserved", {"reservation_id": reservation}


async def handle(js: JetStreamContext, msg: Any) -> None:
    headers = msg.headers or {}
    try:
        payload = json.loads(msg.data)
    except ValueError:
        payload = None
    if "Saga-Id" not in headers or not isinstance(payload, dict):
        await msg.term()  # unusable: never redeliver (the SDK also copies it to saga.dlq.*)
        return
    kind = headers.get("Saga-Kind", "step")
    key = f"{headers['Saga-Name']}:{headers['Saga-Id']}:{headers['Saga-Step']}:{kind}"
    subject, reply = answer(key, payload)
    out = {name: headers[name] for name in COPIED if name in headers}
    out["Nats-Msg-Id"] = f"{key}:reply:{headers.get('Saga-Attempt', '1')}"
    await js.publish(subject, json.dumps(reply).encode(), headers=out)
    await msg.ack()  # only now: a crash before this means a redelivery, never a lost reply


async def main(url: str, max_messages: int | None) -> None:
    nc = await nats.connect(url)
    js = nc.jetstream()
    config = ConsumerConfig(
        durable_name="raw-inventory",
        filter_subject=COMMAND,
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=5,
        max_deliver=5,
    )
    await js.add_consumer(STREAM, config)  # the engine must have created the stream
    sub = await js.pull_subscribe_bind(durable="raw-inventory", stream=STREAM)
    handled = 0
    while max_messages is None or handled < max_messages:
        try:
            msgs = await sub.fetch(batch=50, timeout=1)
        except NatsTimeoutError:
            continue
        for msg in msgs:
            await handle(js, msg)
            handled += 1
    await nc.drain()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--nats", default="nats://127.0.0.1:4222")
    parser.add_argument("--max-messages", type=int, help="exit after this many messages")
    args = parser.parse_args()
    asyncio.run(main(args.nats, args.max_messages))
