"""The engine's incoming deliveries alone: thread CPU per message, no applier, no services.

    PYTHONPATH=<checkout> python <checkout>/bench/deliveries.py [--messages N] [--rounds R]

Builds ``N`` deliveries as the engine fetches them (a trigger of ``bench-order`` and three
step successes with ``Saga-Id`` and ``Saga-Attempt``, each with a ``$JS.ACK`` reply) on a
connection to a nats-server of its own, then times, in this thread (``time.thread_time``):
``delivery_of`` (the ack subject read), ``Intake.parse``, ``Engine._take`` (both of those
plus the objects per message) and the settling of the whole batch as acks, as
``Engine._apply_batch`` does (``_settle_all``; ``_settle`` one by one in a checkout from
before it). Prints the medians of the rounds, µs per message, as JSON. Compare checkouts
by running it from each in turn, several times, alternating.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import nats
from nats.aio.msg import Msg

from bench.measure import order
from saga.definition.loader import load_catalog
from saga.definition.subjects import Role
from saga.engine.service import Engine
from saga.nats.delivery import delivery_of
from saga.nats.server import EmbeddedServer
from saga.nats.settle import ACK
from saga.protocol import HEADER_ATTEMPT, HEADER_MSG_ID, HEADER_SAGA_ID

DEFINITIONS = Path(__file__).resolve().parent / "definitions"
SUCCESS = b'{"order_id": "%s", "reservation_id": "r-1", "payment_id": "p-1", "amount": 42.5}'


def deliveries(nc: Any, engine: Engine, count: int, round_: int) -> list[Msg]:
    """``count`` messages: every fourth a trigger, the others a step's success."""
    definition = engine.catalog.latest("bench-order")
    assert definition is not None
    consumed = definition.subjects.consumed
    trigger = definition.trigger.event
    successes = [s for s, use in consumed.items() if use.role is Role.SUCCESS][:3]
    msgs = []
    for i in range(count):
        saga_id = f"o-{round_}-{i // 4}"
        reply = f"$JS.ACK.SAGA_EVENTS.saga-engine.1.{1000 + i}.{900 + i}.1764770000000000000.0"
        if i % 4 == 0:
            msgs.append(Msg(nc, trigger, reply, order(saga_id, False), None))
        else:
            headers = {HEADER_SAGA_ID: saga_id, HEADER_ATTEMPT: "1", HEADER_MSG_ID: f"{i}"}
            data = SUCCESS % saga_id.encode()
            msgs.append(Msg(nc, successes[i % 4 - 1], reply, data, headers))
    return msgs


async def measure(count: int, rounds: int) -> dict[str, float]:
    server = EmbeddedServer().start()
    nc = await nats.connect(server.url)
    try:
        engine = Engine(nc, load_catalog([DEFINITIONS]))
        found: dict[str, list[float]] = {}

        def took(name: str, started: float) -> None:
            found.setdefault(name, []).append((time.thread_time() - started) / count * 1e6)

        for round_ in range(rounds):
            msgs = deliveries(nc, engine, count, round_)
            gc.collect()
            started = time.thread_time()
            for msg in msgs:
                delivery_of(msg)
            took("delivery_of", started)
            started = time.thread_time()
            for msg in msgs:
                engine.intake.parse(msg.subject, msg.data, msg.headers, "SAGA_EVENTS", 7)
            took("parse", started)
            started = time.thread_time()
            taken = [engine._take(msg) for msg in msgs]
            took("take", started)
            ready: list[Any] = [item for item in taken if hasattr(item, "work")]
            assert len(ready) == count, "every delivery is an event to apply"
            await nc.flush()
            started = time.thread_time()
            if hasattr(engine, "_settle_all"):
                await engine._settle_all([(item, ACK) for item in ready])
            else:  # a checkout from before round 6
                for item in ready:
                    await engine._settle(item.msg, ACK, item.received, item.work.saga_id, item.meta)
            await nc.flush()
            took("settle", started)
        return {name: round(statistics.median(values), 3) for name, values in found.items()}
    finally:
        await nc.close()
        server.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=4000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    result = asyncio.run(measure(args.messages, args.rounds))
    print(json.dumps(result, allow_nan=False))


if __name__ == "__main__":
    main()
