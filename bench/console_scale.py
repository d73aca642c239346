"""Console pages among a million instances: ``python bench/console_scale.py [--instances N]``.

Fills the buckets as ``bench/index_scale.py`` does (records, index entries, search markers
written straight to a temporary embedded nats-server), starts an engine with the example
definitions and its admin server, then times each console page over HTTP (median of
``--runs``, milliseconds, the full response read): the parked list, its second page, a
search by id (the redirect) and by business key, a ``where`` filter, an instance page, and
the definitions overview (counts by state). Prints JSON. See ``docs/performance.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiohttp
import nats

from bench.index_scale import SAGAS, customer, fill, timed
from saga.admin import AdminServer, AdminSettings
from saga.definition import load_catalog
from saga.engine import Engine
from saga.nats.provision import StreamSettings, ensure_bucket, ensure_index_stream
from saga.nats.server import EmbeddedServer
from saga.nats.topology import Topology

ROOT = Path(__file__).resolve().parent.parent


async def get(session: aiohttp.ClientSession, url: str) -> tuple[int, str]:
    async with session.get(url, allow_redirects=False) as response:
        return response.status, await response.text()


async def measure(base: str, n: int, runs: int) -> dict[str, Any]:
    probe = n // 2 + 1
    saga_id, key = f"ord-{probe:07d}", customer(probe)
    pages = {
        "list_parked_ms": "sagas?state=parked",
        "search_by_id_ms": f"sagas?q={saga_id}",
        "search_business_key_ms": f"sagas?q={key}",
        "where_customer_ms": f"sagas?where=customer%3D{key}",
        "instance_page_ms": f"sagas/{SAGAS[probe % 2]}/{saga_id}",
        "definitions_counts_ms": "definitions",
    }
    figures: dict[str, Any] = {}
    async with aiohttp.ClientSession() as session:
        status, text = await get(session, base + pages["list_parked_ms"])
        assert status == 200, status
        assert text.count('class="badge s-parked"') == 50 + 1, "50 rows and the legend"
        cursor = re.search(r"cursor=([0-9]+)", text)
        assert cursor is not None
        pages["list_parked_page2_ms"] = f"sagas?state=parked&cursor={cursor.group(1)}"
        for name, path in pages.items():
            figures[name], (status, text) = await timed(lambda p=path: get(session, base + p), runs)
            assert status in (200, 303), (name, status)
        assert f"customer={key}" in (await get(session, base + pages["where_customer_ms"]))[1]
    return figures


async def run(n: int, runs: int) -> dict[str, Any]:
    now = datetime.now(UTC)
    result: dict[str, Any] = {"instances": n, "runs": runs}
    with (
        tempfile.TemporaryDirectory() as store_dir,
        EmbeddedServer(store_dir=Path(store_dir)) as server,
    ):
        nc = await nats.connect(server.url)
        js = nc.jetstream()
        await ensure_bucket(js, Topology().instances_bucket, StreamSettings())
        await ensure_index_stream(js, Topology(), StreamSettings())
        began = time.monotonic()
        await fill(nc, 0, n, n, now)
        result["fill_seconds"] = round(time.monotonic() - began, 1)
        engine = Engine(nc, load_catalog([ROOT / "definitions"]))
        admin = AdminServer(engine.view(), AdminSettings(port=0))
        url = await admin.start()
        await engine.start()
        try:
            result["pages"] = await measure(url + "/console/", n, runs)
        finally:
            await admin.stop()
            await engine.stop()
            await nc.close()
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python bench/console_scale.py", description=__doc__)
    parser.add_argument("--instances", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=7, help="runs per page")
    args = parser.parse_args(argv)
    print(json.dumps(asyncio.run(run(args.instances, args.runs)), indent=2))


if __name__ == "__main__":
    main()
