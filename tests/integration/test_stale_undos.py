"""An undo the operator resolved is not redelivered to its service any more (issue 13):
the saga's trace ends when the saga does, not minutes later."""

from __future__ import annotations

from typing import Any

import nats

from saga.core import OperatorResume
from saga.definition import parse_definition
from saga.engine import Engine, EngineSettings
from saga.inspect import find_instance, instance_store
from saga.nats.provision import StreamSettings
from saga.nats.server import EmbeddedServer
from saga.nats.topology import Topology
from saga.participant import App, Context, ParticipantSettings, Reject
from tests.support import wait_for

SAGA = """
name: stuck
trigger: {event: stuck.started, id: {field: id}}
steps:
  - name: hold
    publish: {event: stuck.hold, data: {id: trigger.id}}
    success: stuck.held
    compensate:
      publish: {event: stuck.release, data: {id: trigger.id}}
      success: stuck.released
      timeout: 1s
  - name: fail
    publish: {event: stuck.fail, data: {id: trigger.id}}
    success: stuck.done
    failure: stuck.refused
"""
MAX_DELIVER = 30


async def test_a_resolved_undo_is_acked_not_redelivered(nats_server: EmbeddedServer) -> None:
    releases: list[int] = []
    app = App("stuck")

    @app.step("stuck.hold", success="stuck.held")
    async def hold(ctx: Context, payload: dict[str, Any]) -> dict[str, Any]:
        return {}

    @app.step("stuck.fail", success="stuck.done", failure="stuck.refused")
    async def fail(ctx: Context, payload: dict[str, Any]) -> dict[str, Any]:
        raise Reject("no")

    @app.compensation("stuck.release", success="stuck.released")
    async def release(ctx: Context, payload: dict[str, Any]) -> dict[str, Any]:
        releases.append(ctx.delivery)
        raise RuntimeError("the lock service is down")

    settings = ParticipantSettings(
        stream=StreamSettings(ack_wait_backoff=(0.2,), max_deliver=MAX_DELIVER)
    )
    nc = await nats.connect(nats_server.url)
    engine = Engine(nc, {"stuck": parse_definition(SAGA)}, EngineSettings(fetch_wait=0.2))
    await engine.start()
    try:
        async with app.running(nc, settings):
            js = nc.jetstream()
            await js.publish("stuck.started", b'{"id": "s-1"}')
            store = await instance_store(js, Topology())

            async def status() -> str | None:
                state = await find_instance(store, "s-1", "stuck")
                return state.status.value if state else None

            await wait_for(lambda: _is(status, "parked"), timeout=20, message="the saga to park")
            result = await engine.act("s-1", "stuck", OperatorResume())
            assert result.ok, result
            await wait_for(lambda: _is(status, "compensated"), message="the saga to end")
            resolved_at = len(releases)

            async def settled() -> bool:
                info = await js.consumer_info(Topology().events_stream, "stuck")
                return info.num_ack_pending == 0 and info.num_pending == 0

            await wait_for(settled, timeout=30, message="the undo command to be settled")
            assert len(releases) <= resolved_at + 1, "the resolved undo kept running"
            assert max(releases) < MAX_DELIVER, "it was redelivered until it gave up"
    finally:
        await engine.stop()
        await nc.close()


async def _is(status: Any, wanted: str) -> bool:
    return bool(await status() == wanted)
