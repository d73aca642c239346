"""Finding instances among a million: ``python bench/index_scale.py [--instances N] [--json]``.

Starts its own nats-server (embedded, temporary file store), writes N instance records
straight to the ``saga_instances`` bucket and their index entries to ``SAGA_INDEX``
(pipelined, no engine), then times, median of several runs each:

- ``saga list --state parked --limit 50`` (in process, and the CLI command once end to end),
  its second page, and the last hour;
- find by id (the index entry, and the full record as ``saga status ID`` reads it);
- find by a business key (a search attribute, ``saga list --where customer=...``);

and the same operations the old way, reading every instance (``saga.client`` without the
index), at ``--baseline-at`` instances only: a full scan grows with N, so its figure at N is
extrapolated linearly, and said so. See ``docs/performance.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import nats
from nats.aio.client import Client

from saga.client import find_record, list_instances
from saga.core.state import HistoryEntry, InstanceState, Status, StepState, StepStatus
from saga.index import SagaIndex, SagaQuery
from saga.index.entry import index_writes
from saga.nats.acks import PubAck, acks_for
from saga.nats.provision import StreamSettings, ensure_bucket, ensure_index_stream
from saga.nats.server import EmbeddedServer
from saga.nats.topology import Topology, instance_key
from saga.protocol import kv_prefix, kv_stream
from saga.store import InstanceRecord, KvInstanceStore

ROOT = Path(__file__).resolve().parent.parent
SAGAS = ("order-fulfilment", "travel-booking")
CUSTOMERS_PER_INSTANCE = 10
"""One customer per this many instances: a business key selects about 10."""
WINDOW = 4000
SPAN = timedelta(days=7)
"""The instances' times are spread over this (the default ``finished_ttl``)."""


def status_of(i: int) -> Status:
    """A plausible mix: 1 % parked, 2 % running, 1 % compensating, 6 % compensated."""
    r = i % 100
    if r == 0:
        return Status.PARKED
    if r < 3:
        return Status.RUNNING
    if r == 3:
        return Status.COMPENSATING
    if r < 10:
        return Status.COMPENSATED
    return Status.COMPLETED


def instance(i: int, n: int, now: datetime) -> InstanceState:
    at = now - SPAN + SPAN * (i / n)
    status = status_of(i)
    steps = {
        name: StepState(status=StepStatus.SUCCEEDED, attempt=1, started_at=at, finished_at=at)
        for name in ("reserve_inventory", "charge_payment", "ship")
    }
    return InstanceState(
        saga_id=f"ord-{i:07d}",
        saga_name=SAGAS[i % 2],
        saga_version=1,
        status=status,
        started_at=at - timedelta(seconds=2),
        updated_at=at,
        finished_at=at if status.terminal else None,
        context={
            "trigger": {"order_id": f"ord-{i:07d}", "customer_id": customer(i), "total": i % 997},
            "steps": {"reserve_inventory": {"reservation_id": f"r-{i}"}},
        },
        steps=steps,
        completed=list(steps),
        failure_step="charge_payment" if status == Status.PARKED else None,
        failure_reason="card declined" if status == Status.PARKED else None,
        history=[HistoryEntry(at=at, event=e, step="ship") for e in ("started", "succeeded")],
    )


def customer(i: int) -> str:
    return f"cus-{i // CUSTOMERS_PER_INSTANCE:06d}"


async def fill(nc: Client, start: int, stop: int, n: int, now: datetime) -> float:
    """Write instances ``[start, stop)``: record, index entry, search marker; returns seconds."""
    acks = acks_for(nc)
    bucket = kv_prefix(Topology().instances_bucket)
    pending: list[asyncio.Future[PubAck]] = []
    began = time.monotonic()
    for i in range(start, stop):
        state = instance(i, n, now)
        record = InstanceRecord(state=state)
        key = instance_key(state.saga_name, state.saga_id)
        pending.append(await acks.send(bucket + key, record.model_dump_json().encode()))
        search = {"customer": state.context["trigger"]["customer_id"]}
        for write in index_writes(None, state, {}, search, None):
            pending.append(await acks.send(write.subject, write.data))
        if len(pending) >= WINDOW:
            await asyncio.gather(*pending)
            pending.clear()
    await asyncio.gather(*pending)
    return time.monotonic() - began


async def timed(operation: Callable[[], Awaitable[Any]], runs: int) -> tuple[float, Any]:
    """Median milliseconds of ``runs`` calls, and the last result."""
    times, result = [], None
    for _ in range(runs):
        began = time.perf_counter()
        result = await operation()
        times.append((time.perf_counter() - began) * 1000)
    return round(statistics.median(times), 2), result


async def measure_index(nc: Client, n: int, now: datetime, runs: int) -> dict[str, Any]:
    index = SagaIndex(nc)
    bucket = Topology().instances_bucket
    store = KvInstanceStore(nc, bucket, await nc.jetstream().key_value(bucket), index=index)
    probe = n // 2 + 1  # an instance in the middle of the stream
    saga_id, key = f"ord-{probe:07d}", customer(probe)
    figures: dict[str, Any] = {}
    parked = SagaQuery(state="parked", limit=50)
    figures["list_parked_50_ms"], page = await timed(lambda: index.list(parked), runs)
    assert len(page.items) == min(50, n // 100 + (n % 100 > 0)), len(page.items)
    second = SagaQuery(state="parked", limit=50, cursor=page.cursor)
    figures["list_parked_page2_ms"], _ = await timed(lambda: index.list(second), runs)
    recent = SagaQuery(since=now - timedelta(hours=1), limit=50)
    figures["list_last_hour_50_ms"], _ = await timed(lambda: index.list(recent), runs)
    older = SagaQuery(until=now - timedelta(days=3), limit=50)
    figures["list_until_3d_ago_50_ms"], page = await timed(lambda: index.list(older), runs)
    assert all(s.updated_at <= now - timedelta(days=3) for s in page.items)
    whole_saga = SagaQuery(saga=SAGAS[1], limit=50)
    figures["list_saga_50_ms"], _ = await timed(lambda: index.list(whole_saga), runs)
    one_saga = SagaQuery(saga=SAGAS[0], state="running", limit=50)
    figures["list_saga_running_50_ms"], _ = await timed(lambda: index.list(one_saga), runs)
    figures["find_by_id_ms"], found = await timed(lambda: index.find(saga_id), runs)
    assert [s.saga_id for s in found] == [saga_id], found
    figures["status_by_id_ms"], record = await timed(lambda: find_record(store, saga_id), runs)
    assert record is not None
    by_key = SagaQuery(where={"customer": key}, limit=50)
    figures["find_by_business_key_ms"], page = await timed(lambda: index.list(by_key), runs)
    assert len(page.items) == CUSTOMERS_PER_INSTANCE, page.items
    return figures


async def measure_scan(nc: Client, n: int) -> dict[str, Any]:
    """The old way: the store without its index reads every instance (one run each)."""
    bucket = Topology().instances_bucket
    store = KvInstanceStore(nc, bucket, await nc.jetstream().key_value(bucket))
    saga_id = f"ord-{n // 2 + 1:07d}"
    figures: dict[str, Any] = {}
    figures["scan_list_parked_50_ms"], _ = await timed(
        lambda: list_instances(store, "parked", None, 50), 1
    )
    figures["scan_find_by_id_ms"], found = await timed(lambda: find_record(store, saga_id), 1)
    assert found is not None
    return figures


def cli_list_ms(url: str) -> float:
    """``saga list --state parked --limit 50`` end to end: process start, connect, query."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    began = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "saga", "list", "--state", "parked", "--limit", "50", "--nats", url],
        env=env,
        check=True,
        capture_output=True,
    )
    return round((time.perf_counter() - began) * 1000, 1)


async def run(n: int, baseline_at: int, runs: int) -> dict[str, Any]:
    now = datetime.now(UTC)
    result: dict[str, Any] = {"instances": n, "baseline_at": min(baseline_at, n)}
    with (
        tempfile.TemporaryDirectory() as store_dir,
        EmbeddedServer(store_dir=Path(store_dir)) as server,
    ):
        nc = await nats.connect(server.url)
        js = nc.jetstream()
        settings = StreamSettings()
        await ensure_bucket(js, Topology().instances_bucket, settings)
        await ensure_index_stream(js, Topology(), settings)
        small = min(baseline_at, n)
        seconds = await fill(nc, 0, small, n, now)
        result[f"at_{small}"] = {
            **await measure_scan(nc, small),
            **await measure_index(nc, small, now, runs),
        }
        seconds += await fill(nc, small, n, n, now)
        result["fill_seconds"] = round(seconds, 1)
        result["fill_instances_per_s"] = round(n / seconds)
        result[f"at_{n}"] = await measure_index(nc, n, now, runs)
        result[f"at_{n}"]["cli_list_parked_50_ms"] = cli_list_ms(server.url)
        scan = result[f"at_{small}"]
        result["scan_extrapolated_to_n_ms"] = {
            k: round(v * n / small) for k, v in scan.items() if k.startswith("scan_")
        }
        info = await js.stream_info(Topology().index_stream)
        result["index_stream_mib"] = round(info.state.bytes / 2**20, 1)
        bucket = await js.stream_info(kv_stream(Topology().instances_bucket))
        result["instances_bucket_mib"] = round(bucket.state.bytes / 2**20, 1)
        result["server_rss_mib"] = _rss_mib(server)
        await nc.close()
    return result


def _rss_mib(server: EmbeddedServer) -> float | None:
    if server.process is None:
        return None
    try:
        with open(f"/proc/{server.process.pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python bench/index_scale.py", description=__doc__)
    parser.add_argument("--instances", type=int, default=1_000_000)
    parser.add_argument("--baseline-at", type=int, default=20_000, help="N of the full scans")
    parser.add_argument("--runs", type=int, default=7, help="runs per timed operation")
    parser.add_argument("--json", action="store_true", help="print one JSON object only")
    args = parser.parse_args(argv)
    if args.instances < 100:
        parser.error("--instances must be at least 100")
    result = asyncio.run(run(args.instances, args.baseline_at, args.runs))
    print(json.dumps(result, indent=2 if not args.json else None))


if __name__ == "__main__":
    main()
