"""An undo the operator resolved is not redelivered to its service any more (issue 13):
the saga's trace ends when the saga does, not minutes later; the operator's actions are
on the trace."""

from __future__ import annotations

from typing import Any

import nats
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from saga.client import find_instance, instance_store
from saga.core import OperatorAbort, OperatorResume
from saga.definition import parse_definition
from saga.engine import Engine, EngineSettings
from saga.nats.provision import StreamSettings
from saga.nats.server import EmbeddedServer
from saga.nats.topology import Topology
from saga.participant import App, Context, ParticipantSettings, Reject
from saga.telemetry import Telemetry
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
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    telemetry = Telemetry.for_providers(provider)
    app.telemetry = telemetry
    nc = await nats.connect(nats_server.url)
    engine = Engine(
        nc,
        {"stuck": parse_definition(SAGA)},
        EngineSettings(fetch_wait=0.2),
        telemetry=telemetry,
    )
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
            refused = await engine.act("s-1", "stuck", OperatorAbort("too late"))
            assert not refused.ok
            result = await engine.act("s-1", "stuck", OperatorResume())
            assert result.ok, result
            await wait_for(lambda: _is(status, "compensated"), message="the saga to end")
            resolved_at = len(releases)

            async def settled() -> bool:
                info = await js.consumer_info(Topology().events_stream, "stuck")
                return bool(info.num_ack_pending == 0 and info.num_pending == 0)

            await wait_for(settled, timeout=30, message="the undo command to be settled")
            assert len(releases) <= resolved_at + 1, "the resolved undo kept running"
            assert max(releases) < MAX_DELIVER, "it was redelivered until it gave up"

    finally:
        await engine.stop()
        await nc.close()

    # the operator's actions are on the saga's trace, applied or refused
    spans = exporter.get_finished_spans()
    root = next(s for s in spans if s.name == "saga stuck")
    actions = {s.name: s for s in spans if s.name.startswith("saga.operator")}
    assert set(actions) == {"saga.operator abort", "saga.operator resume"}
    for span in actions.values():
        assert span.parent is not None
        assert span.parent.span_id == root.context.span_id
    abort = actions["saga.operator abort"].attributes
    assert abort is not None
    assert abort["saga.operator.result"] == "refused"
    assert abort["saga.operator.reason"] == "too late"
    assert "parked" in str(abort["saga.operator.refusal"])
    resume = actions["saga.operator resume"].attributes
    assert resume is not None
    assert resume["saga.operator.result"] == "applied"
    assert resume["saga.step"] == "hold"
    # the parked saga's root was written when it parked, and again (same id) when it ended
    roots = [s for s in spans if s.name == "saga stuck"]
    assert [r.attributes["saga.outcome"] for r in roots if r.attributes] == [
        "parked",
        "compensated",
    ]
    assert len({r.context.span_id for r in roots}) == 1


async def _is(status: Any, wanted: str) -> bool:
    return bool(await status() == wanted)
