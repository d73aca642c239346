"""A copy of the inventory service with nothing but nats-py: its reserve step.

It is what ``docs/protocol.md`` describes, written out, and it runs side by side with
the Python SDK's copy of the same service (``services/inventory.py``): the same durable
consumer (``inventory``) and the same reply ledger (``saga_replies``). It

- waits for the engine's streams ``SAGA_EVENTS`` and ``SAGA_DLQ``, and waits out a
  JetStream that does not answer (a cluster electing a leader);
- binds the shared durable by the filter rule, never narrowing it;
- pulls continuously and handles messages concurrently, sending in-progress acks
  while a handler runs, so one slow message holds up nothing;
- checks every message and dead-letters what can never be handled;
- answers each step once: the reply is stored in the ledger before it is published,
  and a later delivery (or another copy) publishes the stored reply;
- leaves subjects it has no handler for (``inventory.release``) to the copies that do.

    python docs/examples/raw_participant.py --nats nats://127.0.0.1:4222 [--max-messages N]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import math
import re
from typing import Any

import nats
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, KeyValueConfig
from nats.js.errors import (
    KeyNotFoundError,
    KeyWrongLastSequenceError,
    NoStreamResponseError,
    NotFoundError,
    ServiceUnavailableError,
)
from nats.js.kv import KeyValue

EVENTS, DLQ, LEDGER = "SAGA_EVENTS", "SAGA_DLQ", "saga_replies"
DURABLE = "inventory"
"""The service's name: every copy, in any language, shares this durable."""
COMMAND, SUCCESS, FAILURE = "inventory.reserve", "inventory.reserved", "inventory.rejected"
KIND = "step"
BACKOFF, MAX_DELIVER, MAX_ACK_PENDING = [2.0, 4.0, 8.0, 16.0, 30.0], 10, 2000
LEDGER_TTL = 7 * 24 * 3600.0
MAX_BODY, MAX_SAGA_ID = 1024 * 1024, 256
IN_PROGRESS_EVERY, MAX_IN_FLIGHT = 1.0, 64
TRANSIENT = (
    NatsTimeoutError,
    NoRespondersError,
    NoStreamResponseError,
    ServiceUnavailableError,
    TimeoutError,
)
COPIED = ("traceparent", "tracestate")
_SAFE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class Bad(Exception):
    """A message that can never be handled: dead-letter it with ``code``."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code, self.reason = code, reason


def answer(key: str, payload: dict[str, Any]) -> tuple[str, dict[str, Any], bool]:
    """The business rule: ``(subject, body, failed)``; SKUs starting with UNKNOWN are
    rejected. The reservation id is derived from the key, like an external idempotency key."""
    for item in payload.get("items") or []:
        if str(item.get("sku", "")).startswith("UNKNOWN"):
            return FAILURE, {"reason": "unknown-sku", "sku": item["sku"]}, True
    reservation = "res-" + hashlib.sha256(key.encode()).hexdigest()[:12]
    return SUCCESS, {"reservation_id": reservation}, False


def token(value: str) -> str:
    """A KV key for an id: kept when safe, else ``h`` + 40 hex digits of its SHA-256."""
    return value if _SAFE.match(value) else "h" + hashlib.sha256(value.encode()).hexdigest()[:40]


class NonFinite(ValueError):
    """NaN, an infinity, or a number like 1e400: not JSON by RFC 8259."""


def _no_constant(name: str) -> Any:
    raise NonFinite(f"{name} is not a JSON number")


def _finite(text: str) -> float:
    if not math.isfinite(value := float(text)):
        raise NonFinite(f"{text} is too large for a finite number")
    return value


def check(msg: Msg) -> tuple[dict[str, str], dict[str, Any], int]:
    """The protocol's checks, in its order: ``(headers, payload, attempt)`` or :class:`Bad`."""
    if len(msg.data) > MAX_BODY:
        raise Bad("malformed", f"payload larger than {MAX_BODY} bytes")
    try:
        text = msg.data.decode("utf-8")
        payload = json.loads(text, parse_constant=_no_constant, parse_float=_finite)
    except NonFinite as exc:
        raise Bad("non-finite-number", f"payload is not valid JSON: {exc}") from exc
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        if msg.data.strip():
            raise Bad("malformed", f"payload is not JSON: {exc}") from exc
        payload = {}  # an empty body means {}
    if not isinstance(payload, dict):
        raise Bad("malformed", "payload is not a JSON object")
    headers = {k: v.strip() for k, v in (msg.headers or {}).items()}
    if not headers.get("Saga-Id"):
        raise Bad("no-saga-id", "no Saga-Id header")
    if len(headers["Saga-Id"]) > MAX_SAGA_ID:
        raise Bad("malformed", f"Saga-Id longer than {MAX_SAGA_ID} characters")
    if not headers.get("Saga-Name"):
        raise Bad("malformed", "no Saga-Name header")
    kind = headers["Saga-Kind"] = headers.get("Saga-Kind") or KIND  # absent: the route's
    if kind != KIND:
        raise Bad("malformed", f"Saga-Kind is {kind!r} but {msg.subject} is a step")
    if not headers.get("Saga-Step"):
        raise Bad("malformed", "no Saga-Step header")
    attempt = headers.get("Saga-Attempt", "1")
    if not (attempt.isascii() and attempt.isdigit() and int(attempt) >= 1):
        raise Bad("malformed", f"Saga-Attempt is {attempt!r}, not a whole number >= 1")
    return headers, payload, int(attempt)


class Copy:
    """One running copy: the consumer bound, the ledger open."""

    def __init__(self, js: JetStreamContext, ledger: KeyValue, consumer: ConsumerConfig) -> None:
        self.js, self.ledger = js, ledger
        self.backoff = consumer.backoff or BACKOFF
        self.max_deliver = consumer.max_deliver or MAX_DELIVER

    async def handle(self, msg: Msg) -> None:
        """Settle one message: ack, nak with delay, or dead-letter (copy, then term)."""
        delivered = msg.metadata.num_delivered
        if msg.subject != COMMAND:  # another copy's subject: leave it to that copy
            if delivered >= self.max_deliver:
                reason = f"no handler for {msg.subject} in any copy of {DURABLE} that got it"
                await self.dead_letter(msg, "unknown-event", reason)
            else:
                await msg.nak(delay=self.backoff[min(delivered, len(self.backoff)) - 1])
            return
        try:
            headers, payload, attempt = check(msg)
        except Bad as bad:
            await self.dead_letter(msg, bad.code, bad.reason)
            return
        key = ":".join(headers[h] for h in ("Saga-Name", "Saga-Id", "Saga-Step", "Saga-Kind"))
        stored, revision = await self.find(key)
        if stored is not None and (not stored["failed"] or attempt <= stored["attempt"]):
            print(f"{key}: replayed the stored reply", flush=True)
        else:  # no reply yet, or a retry after a failure: do the work
            subject, body, failed = answer(key, payload)
            reply = {name: headers[name] for name in COPIED if name in headers}
            reply |= {h: headers[h] for h in ("Saga-Id", "Saga-Name", "Saga-Step", "Saga-Kind")}
            # The attempt that produced the reply: in its message id (a redelivery of it is
            # dropped by the server, a later attempt's reply is not) and as Saga-Attempt.
            reply |= {"Saga-Attempt": str(attempt), "Nats-Msg-Id": f"{key}:reply:{attempt}"}
            stored = await self.record(
                key,
                {
                    "subject": subject,
                    "data": json.dumps(body, allow_nan=False),
                    "headers": reply,
                    "failed": failed,
                    "attempt": attempt,
                },
                revision,
            )
            print(f"{key}: answered on {stored['subject']}", flush=True)
        await self.js.publish(stored["subject"], stored["data"].encode(), headers=stored["headers"])
        await msg.ack()  # only now: a crash before this means a redelivery, never a lost reply

    async def find(self, key: str) -> tuple[dict[str, Any] | None, int | None]:
        try:
            entry = await self.ledger.get(token(key))
        except KeyNotFoundError:
            return None, None
        return (json.loads(entry.value), entry.revision) if entry.value else (None, None)

    async def record(self, key: str, reply: dict[str, Any], revision: int | None) -> dict[str, Any]:
        """Store the reply (create, or update over a failure); if another copy stored one
        first, that one is the answer."""
        value = json.dumps(reply, allow_nan=False).encode()
        try:
            if revision is None:
                await self.ledger.create(token(key), value)
            else:
                await self.ledger.update(token(key), value, last=revision)
        except KeyWrongLastSequenceError:
            winner, _ = await self.find(key)
            if winner is None:
                raise
            return winner
        return reply

    async def dead_letter(self, msg: Msg, code: str, reason: str) -> None:
        meta = msg.metadata
        headers = {k: v for k, v in (msg.headers or {}).items() if not k.startswith("Nats-")}
        headers |= {
            "Saga-Dlq-Code": code,
            "Saga-Dlq-Reason": reason[:512],
            "Saga-Dlq-Subject": msg.subject,
            "Saga-Dlq-Stream": meta.stream,
            "Saga-Dlq-Sequence": str(meta.sequence.stream),
            "Saga-Dlq-Consumer": meta.consumer,
            "Nats-Msg-Id": f"dlq:{meta.stream}:{meta.sequence.stream}",
        }
        await self.js.publish(f"saga.dlq.{code}", msg.data, headers=headers)
        await msg.term()
        print(f"dead-lettered {msg.subject} ({code}): {reason}", flush=True)


async def with_in_progress(msg: Msg, work: Any) -> None:
    """Run ``work``, telling the server every second that the message is still in hand."""

    async def tick() -> None:
        while True:
            await asyncio.sleep(IN_PROGRESS_EVERY)
            await msg.in_progress()

    ticker = asyncio.create_task(tick())
    try:
        await work
    except Exception as exc:  # not a business failure: let it be redelivered
        print(f"{msg.subject}: {exc!r}; redelivered after the ack wait", flush=True)
    finally:
        ticker.cancel()


async def patiently(what: str, action: Any) -> Any:
    """Retry ``action()`` while JetStream does not answer (an outage, not a reason to exit)."""
    delay = 0.5
    while True:
        try:
            return await action()
        except TRANSIENT as exc:
            print(f"{what}: JetStream is not answering ({exc!r}); again in {delay}s", flush=True)
        await asyncio.sleep(delay)
        delay = min(delay * 2, 5.0)


async def wait_for_streams(js: JetStreamContext) -> None:
    """The engine creates both streams: wait for them (dead letters go to ``SAGA_DLQ``)."""
    for name in (EVENTS, DLQ):
        while True:
            try:
                await patiently(f"stream {name}", lambda n=name: js.stream_info(n))
                break
            except NotFoundError:
                print(f"waiting for stream {name}, created by the saga engine", flush=True)
                await asyncio.sleep(1.0)


async def bind_consumer(nc: Client, js: JetStreamContext) -> ConsumerConfig:
    """Create the durable with our settings, or use it as it is when its filter already
    covers our subject (never narrow it: other copies may handle more)."""
    with contextlib.suppress(NotFoundError):
        return await consumer_config(js)
    config = ConsumerConfig(
        durable_name=DURABLE,
        filter_subject=COMMAND,
        ack_policy=AckPolicy.EXPLICIT,
        deliver_policy=DeliverPolicy.ALL,
        backoff=BACKOFF,
        max_deliver=MAX_DELIVER,
        max_ack_pending=MAX_ACK_PENDING,
    )
    # action "create": fails, instead of overwriting, if another copy created it meanwhile
    body = {"stream_name": EVENTS, "config": config.as_dict(), "action": "create"}
    subject = f"$JS.API.CONSUMER.CREATE.{EVENTS}.{DURABLE}"
    request = json.dumps(body, allow_nan=False).encode()
    reply = json.loads((await nc.request(subject, request, 5.0)).data)
    if "error" in reply and reply["error"].get("err_code") != 10148:  # 10148: exists
        raise SystemExit(f"cannot create consumer {DURABLE}: {reply['error']}")
    return await consumer_config(js)


async def consumer_config(js: JetStreamContext) -> ConsumerConfig:
    config: ConsumerConfig = (await js.consumer_info(EVENTS, DURABLE)).config
    return config


async def open_ledger(js: JetStreamContext) -> KeyValue:
    try:
        return await js.key_value(LEDGER)
    except NotFoundError:  # BucketNotFoundError is one
        config = KeyValueConfig(bucket=LEDGER, history=1, ttl=LEDGER_TTL, direct=True)
        return await js.create_key_value(config)


async def main(url: str, max_messages: int | None) -> None:
    nc = await nats.connect(url)
    js = nc.jetstream()
    await wait_for_streams(js)
    consumer = await patiently("consumer", lambda: bind_consumer(nc, js))
    filters = consumer.filter_subjects or [consumer.filter_subject]
    if COMMAND not in filters:
        raise SystemExit(f"consumer {DURABLE} filters {filters}, not {COMMAND}: refusing")
    copy = Copy(js, await patiently("ledger", lambda: open_ledger(js)), consumer)
    sub = await js.pull_subscribe_bind(durable=DURABLE, stream=EVENTS)
    in_flight: set[asyncio.Task[None]] = set()
    fetched = 0
    while max_messages is None or fetched < max_messages:
        free = MAX_IN_FLIGHT - len(in_flight)
        if free <= 0:  # keep pulling as soon as one finishes: no batch waits for its slowest
            await asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED)
            continue
        if max_messages is not None:
            free = min(free, max_messages - fetched)
        try:
            msgs = await sub.fetch(batch=min(50, free), timeout=1)
        except TRANSIENT:
            continue
        for msg in msgs:
            task = asyncio.create_task(with_in_progress(msg, copy.handle(msg)))
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)
        fetched += len(msgs)
    await asyncio.gather(*in_flight)
    await nc.drain()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--nats", default="nats://127.0.0.1:4222")
    parser.add_argument("--max-messages", type=int, help="exit after this many messages")
    args = parser.parse_args()
    asyncio.run(main(args.nats, args.max_messages))
