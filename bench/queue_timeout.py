"""A burst against a busy participant, with and without ``queue_timeout``:
``python bench/queue_timeout.py [--sagas 2000]``.

One engine and one SDK participant in this process, on an embedded nats-server. The
participant works on at most 16 commands at a time, 20 ms each, so a burst of 2,000
triggers leaves commands queued for seconds. The step's ``timeout`` is 2 s. Prints, for
each definition, the lifecycle events seen until every saga ended (``reopened``: a
saga compensated by a timeout whose late success then had to be undone too).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import nats

from saga.definition import parse_definition
from saga.engine import Engine, EngineSettings
from saga.nats.server import EmbeddedServer
from saga.participant import App, Context, ParticipantSettings
from saga.protocol import status_subject

DEFINITION = """
name: signup
trigger: {event: signup.requested, id: {field: id}}
steps:
  - name: create_account
    publish: {event: account.create}
    success: account.created
    timeout: 2s
QUEUE
    compensate: {publish: {event: account.delete}}
"""
BUSY = ParticipantSettings(batch=16, max_inflight=16)


async def burst(sagas: int, queue_timeout: str | None) -> Counter[str]:
    text = DEFINITION.replace(
        "QUEUE", f"    queue_timeout: {queue_timeout}" if queue_timeout else ""
    )
    app = App("accounts")

    @app.step("account.create", success="account.created")
    async def create(ctx: Context, payload: dict[str, Any]) -> dict[str, Any]:
        await asyncio.sleep(0.02)
        return {"account": payload.get("id")}

    outcomes: Counter[str] = Counter()
    with tempfile.TemporaryDirectory() as store, EmbeddedServer(store_dir=Path(store)) as s:
        nc = await nats.connect(s.url)
        engine = Engine(nc, {"signup": parse_definition(text)}, EngineSettings())
        await engine.start()
        ended = asyncio.Event()

        async def on_status(msg: Any) -> None:
            outcomes[msg.subject.rsplit(".", 1)[-1]] += 1
            if outcomes["completed"] + outcomes["compensated"] == sagas:
                ended.set()

        await nc.subscribe(status_subject("signup", ">"), cb=on_status)
        async with app.running(nc, BUSY):
            js = nc.jetstream()
            began = time.monotonic()
            acks = [
                await js.publish_async(
                    "signup.requested", json.dumps({"id": f"u-{i}"}, allow_nan=False).encode()
                )
                for i in range(sagas)
            ]
            await asyncio.gather(*acks)
            await asyncio.wait_for(ended.wait(), 300)
            took = time.monotonic() - began
        await engine.stop()
        await nc.close()
    print(f"queue_timeout {queue_timeout or '-':>4}: {dict(outcomes)} in {took:.1f} s", flush=True)
    return outcomes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sagas", type=int, default=2000)
    args = parser.parse_args()
    asyncio.run(burst(args.sagas, None))
    asyncio.run(burst(args.sagas, "2m"))


if __name__ == "__main__":
    main()
