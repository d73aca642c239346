"""The shared publish path alone: client CPU per JetStream publish and its ack.

    python bench/publish_alone.py [--publishes N] [--inflight K] [--rounds R] [--json]
                                  [--code CHECKOUT ...]

Starts a nats-server (temporary store, loopback) with one memory stream, then, each round,
one client process per ``--code`` checkout, one after the other (their order alternates
between rounds), each publishing with that checkout's :class:`saga.nats.acks.Acks` as the
engine does: ``K`` transitions in flight, each three publishes in an :class:`AckGroup`
(a command, a timer, a status event: 300 bytes, four headers) and one awaited on its own
future (a 1,500-byte record, two headers), until ``N`` publishes were acked. Reported per
checkout: the client's thread CPU per publish (µs, its event loop does all the work), the
median over the rounds and every round's figure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STREAM, SUBJECTS = "PB", "pb.>"


async def _client(url: str, publishes: int, inflight: int) -> float:
    """µs of this thread's CPU per publish+ack (after a warm-up)."""
    import nats

    from saga.nats.acks import AckGroup, Acks

    nc = await nats.connect(url)
    acks = Acks(nc)
    small, record = b"x" * 300, b"r" * 1500

    async def transition(n: int) -> None:
        saga_id = f"{n:08d}-2f0c-4a3e-9a51-6c1f00d4b7e2"
        group = AckGroup()
        for kind in ("cmd", "timer", "status"):
            headers = {
                "Saga-Id": saga_id,
                "Saga-Name": "order",
                "Nats-Msg-Id": f"order:{saga_id}:{kind}:{n}",
                "Nats-Expected-Stream": STREAM,
            }
            await acks.send_in(group, f"pb.{kind}.order.{saga_id}", small, headers)
        stored = await acks.send(
            f"pb.record.{saga_id}", record, {"Saga-Id": saga_id, "Nats-Expected-Stream": STREAM}
        )
        await group.wait()
        await stored

    async def run(count: int) -> None:
        sem = asyncio.Semaphore(inflight)

        async def one(n: int) -> None:
            try:
                await transition(n)
            finally:
                sem.release()

        tasks = []
        for n in range(count // 4):
            await sem.acquire()
            tasks.append(asyncio.create_task(one(n)))
        await asyncio.gather(*tasks)

    await run(2000)  # warm-up
    started = time.thread_time()
    await run(publishes)
    used = time.thread_time() - started
    await nc.close()
    return used / publishes * 1e6


def _worker(args: argparse.Namespace) -> None:
    sys.path.insert(0, str(Path(args.worker).resolve()))  # that checkout's saga
    print(
        json.dumps(asyncio.run(_client(args.url, args.publishes, args.inflight)), allow_nan=False)
    )


async def _stream(url: str) -> None:
    import nats
    from nats.js.api import StorageType, StreamConfig

    nc = await nats.connect(url)
    await nc.jetstream().add_stream(
        StreamConfig(name=STREAM, subjects=[SUBJECTS], storage=StorageType.MEMORY, max_msgs=50_000)
    )
    await nc.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--publishes", type=int, default=20_000)
    parser.add_argument("--inflight", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--code", action="append", default=[], help="checkouts to compare")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return _worker(args)
    sys.path.insert(0, str(ROOT))
    from saga.nats.server import EmbeddedServer

    codes = args.code or [str(ROOT)]
    figures: dict[str, list[float]] = {code: [] for code in codes}
    server = EmbeddedServer().start()
    try:
        asyncio.run(_stream(server.url))
        for round_ in range(args.rounds):
            order = codes if round_ % 2 == 0 else codes[::-1]
            for code in order:
                command = [sys.executable, __file__, "--worker", code, "--url", server.url]
                command += ["--publishes", str(args.publishes), "--inflight", str(args.inflight)]
                out = subprocess.run(command, check=True, capture_output=True, text=True)
                figures[code].append(json.loads(out.stdout))
    finally:
        server.close()
    result = {
        code: {"us_per_publish": statistics.median(f), "rounds": [round(x, 2) for x in f]}
        for code, f in figures.items()
    }
    if args.json:
        print(json.dumps(result, indent=2, allow_nan=False))
    else:
        for code, r in result.items():
            print(f"{code}: {r['us_per_publish']:.2f} µs per publish+ack, rounds {r['rounds']}")


if __name__ == "__main__":
    main()
