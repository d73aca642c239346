"""The server's CPU per saga's worth of writes, with the streams as provisioned or varied.

Starts its own nats-server, provisions the engine's streams with ``provision_engine`` (of the
checkout on ``PYTHONPATH``), then writes what one driven saga makes the server store
(``server_ops_per_saga`` of ``bench/sagas.py``): 8 ``SAGA_EVENTS`` messages with a
``Nats-Msg-Id``, read and acked by a pull consumer; the instance record created and updated 3
times (revision-checked); 3 reply-ledger creates; 3 index entries (running, final, the running
entry's 1 s tombstone); 2 timer messages. Only the server's CPU is reported (``/proc``), in µs
per saga: no Python of the engine or the participants runs, so the figure moves only with what
the server does.

    python bench/server_settings.py --sagas 5000 --variant base --variant no-direct
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
from collections.abc import Awaitable, Callable
from typing import Any

import nats
from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from bench.procs import cpu_seconds
from saga.nats.provision import StreamSettings, ensure_bucket, provision_engine
from saga.nats.server import EmbeddedServer
from saga.nats.topology import Topology

STEPS = ("bench.start", "bench.a", "bench.a.done", "bench.b", "bench.b.done")
Variant = Callable[[JetStreamContext, Topology], Awaitable[None]]


async def _update(js: JetStreamContext, stream: str, **changes: Any) -> None:
    config = copy.copy((await js.stream_info(stream)).config)
    for key, value in changes.items():
        setattr(config, key, value)
    await js.update_stream(config)


async def _base(js: JetStreamContext, topology: Topology) -> None:
    pass


async def _no_direct(js: JetStreamContext, topology: Topology) -> None:
    await _update(js, topology.events_stream, allow_direct=False)


async def _short_window(js: JetStreamContext, topology: Topology) -> None:
    """Not a candidate (protocol.md promises 120 s): what the dedupe map costs at most."""
    await _update(js, topology.events_stream, duplicate_window=1.0)


async def _kv_window(js: JetStreamContext, topology: Topology) -> None:
    for bucket in (topology.instances_bucket, topology.replies_bucket):
        await _update(js, f"KV_{bucket}", duplicate_window=1.0)


async def _kv_history(js: JetStreamContext, topology: Topology) -> None:
    """Not a candidate (the removals come later, at expiry): what the 3 removals cost."""
    await _update(js, f"KV_{topology.instances_bucket}", max_msgs_per_subject=5)


async def _plain_ack_wait(js: JetStreamContext, topology: Topology) -> None:
    """Not a candidate (the 2 s backoff is the crash-recovery promise): the engine's consumer
    with the default 30 s ``ack_wait`` and no backoff, to see what the redelivery timers cost."""
    stream, name = topology.events_stream, topology.engine_consumer
    config = (await js.consumer_info(stream, name)).config
    await js.delete_consumer(stream, name)
    config.backoff, config.ack_wait = None, None
    await js.add_consumer(stream, config)


VARIANTS: dict[str, Variant] = {
    "plain-ack-wait": _plain_ack_wait,
    "kv-history-5": _kv_history,
    "base": _base,
    "no-direct": _no_direct,
    "short-window": _short_window,
    "kv-window": _kv_window,
}


PARTS = ("events", "instance", "replies", "index", "timers")


async def _saga(
    js: JetStreamContext, kv: KeyValue, replies: KeyValue, n: int, parts: set[str]
) -> None:
    """One saga's writes, in the order the engine makes them (each awaited: the CAS needs it)."""
    key = f"bench.i{n}"
    if "events" in parts:
        events = [STEPS[i % len(STEPS)] for i in range(8)]
        await asyncio.gather(
            *(
                js.publish(s, b"x" * 200, headers={"Nats-Msg-Id": f"{n}-{i}"})
                for i, s in enumerate(events)
            )
        )
    if "instance" in parts:
        revision = await kv.create(key, b"r" * 600)
        for _ in range(3):
            revision = await kv.update(key, b"r" * 600, last=revision)
    if "replies" in parts:
        await asyncio.gather(*(replies.create(f"k{n}-{i}", b"y" * 200) for i in range(3)))
    if "index" in parts:
        await js.publish(f"saga.index.bench.running.i{n}", b"s" * 200)
        await js.publish(f"saga.index.bench.completed.i{n}", b"s" * 200)
        await js.publish(f"saga.index.bench.running.i{n}", b"", headers={"Nats-TTL": "1s"})
    if "timers" in parts:
        await js.publish(f"saga.timer.fire.bench.i{n}", b"t")
        await js.publish(f"saga.timer.fire.bench.i{n}", b"t")


async def run(variant: str, sagas: int, concurrency: int, parts: set[str]) -> float:
    topology = Topology()
    with EmbeddedServer() as server:
        nc = await nats.connect(server.url)
        js = nc.jetstream()
        settings = StreamSettings()
        await provision_engine(js, topology, settings, list(STEPS), [])
        await ensure_bucket(js, topology.replies_bucket, settings)
        await VARIANTS[variant](js, topology)
        kv = await js.key_value(topology.instances_bucket)
        replies = await js.key_value(topology.replies_bucket)
        sub = await js.pull_subscribe_bind(topology.engine_consumer, topology.events_stream)
        read = 0

        async def consume() -> None:
            nonlocal read
            while "events" in parts and read < sagas * 8:
                try:
                    msgs = await sub.fetch(200, timeout=1)
                except nats.errors.TimeoutError:
                    continue
                for msg in msgs:
                    await msg.ack()
                read += len(msgs)

        assert server.process is not None
        pid = server.process.pid
        reader = asyncio.create_task(consume())
        before = cpu_seconds(pid)
        pending = iter(range(sagas))

        async def worker() -> None:
            for n in pending:
                await _saga(js, kv, replies, n, parts)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        await asyncio.wait_for(reader, 60)
        await asyncio.sleep(1.5)  # the tombstones expire: their removal is counted too
        cpu = cpu_seconds(pid) - before
        await nc.close()
    return cpu / sagas * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sagas", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--variant", action="append", choices=sorted(VARIANTS))
    parser.add_argument(
        "--part", action="append", choices=PARTS, help="only these writes (default: all)"
    )
    opts = parser.parse_args()
    results: dict[str, list[float]] = {}
    parts = set(opts.part or PARTS)
    for _ in range(opts.rounds):
        for variant in opts.variant or ["base"]:
            us = asyncio.run(run(variant, opts.sagas, opts.concurrency, parts))
            results.setdefault(variant, []).append(round(us))
            print(variant, round(us), flush=True)
    print(json.dumps(results, allow_nan=False))


if __name__ == "__main__":
    main()
