"""How long partitions take to move between engine replicas: ``python bench/handover.py``.

Three engines in this process, on an embedded nats-server, with the default heartbeat,
member TTL and pin timeout. Prints the time until every replica owns exactly the
partitions the live member list deals to it, after each change: a replica joins, a
second joins, one stops cleanly (SIGTERM's path), one's connection dies (a crash).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import nats

from saga.definition import parse_definition
from saga.engine import Engine, EngineSettings
from saga.engine.partitions import assign
from saga.nats.server import EmbeddedServer

SAGA = parse_definition(
    """
name: shop
trigger: {event: shop.ordered, id: {field: id}}
steps:
  - {name: reserve, publish: {event: stock.reserve}, success: stock.reserved, timeout: 30s}
"""
)


def balanced(engines: list[Engine], partitions: int) -> Callable[[], bool]:
    def check() -> bool:
        wanted = assign([e.member_id for e in engines], partitions)
        return all(e.owned == wanted[e.member_id] for e in engines)

    return check


async def seconds_until(condition: Callable[[], bool], limit: float = 60.0) -> float:
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > limit:
            raise TimeoutError(f"not balanced after {limit:.0f}s")
        await asyncio.sleep(0.01)
    return time.monotonic() - started


async def measure(partitions: int) -> list[tuple[str, float]]:
    settings = EngineSettings(partitions=partitions)
    with tempfile.TemporaryDirectory() as store, EmbeddedServer(store_dir=Path(store)) as s:
        clients = [await nats.connect(s.url) for _ in range(3)]
        first, second, third = (Engine(nc, {"shop": SAGA}, settings) for nc in clients)
        figures = []
        await first.start()
        figures.append(("one replica starts", await seconds_until(balanced([first], partitions))))
        await second.start()
        both = balanced([first, second], partitions)
        figures.append(("a second replica joins", await seconds_until(both)))
        await third.start()
        all_three = balanced([first, second, third], partitions)
        figures.append(("a third replica joins", await seconds_until(all_three)))
        started = time.monotonic()
        await third.stop()
        figures.append(
            ("the third stops cleanly", time.monotonic() - started + await seconds_until(both))
        )
        await clients[1].close()  # the second vanishes without a goodbye, like a SIGKILL
        figures.append(("the second crashes", await seconds_until(balanced([first], partitions))))
        await first.stop()
        for nc in clients:
            if not nc.is_closed:
                await nc.close()
        return figures


def main() -> None:
    parser = argparse.ArgumentParser(prog="python bench/handover.py", description=__doc__)
    parser.add_argument("--partitions", type=int, default=12)
    args = parser.parse_args()
    for what, seconds in asyncio.run(measure(args.partitions)):
        print(f"{what:<26} balanced after {seconds:5.2f} s")


if __name__ == "__main__":
    main()
