"""Traces that read as sagas, as a real OTLP backend receives them (issue 13's "done when").

The demo's sagas (every outcome of both example sagas) against the project's OTLP/HTTP
receiver: one trace and one ``saga <name>`` root per saga with its outcome, a shallow
tree, no orphan; and every span of a saga still there after the engine is killed right
after the saga's terminal write, before its exporter could send anything.

Spans are counted by span id: the engine writes its saga spans again after a crash, with
the same ids, and a viewer keeps one copy of each.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from pathlib import Path

import nats
from nats.js.kv import KeyValue

from saga.demo import plan
from saga.nats.server import EmbeddedServer
from saga.nats.topology import Topology, instance_key
from saga.store import InstanceRecord
from services.orders import new_order
from tests.integration.test_tracing_otlp import SERVICES, engine, otel_env, service
from tests.otlp_receiver import OtlpReceiver, ReceivedSpan, otlp_receiver
from tests.support import wait_for

ERROR = 2
DEMO_SAGAS = 12
"""Enough for every planned outcome: both sagas complete and fail at each of their steps."""
EVERY_SPAN = {
    "saga order-fulfilment",
    "saga.step reserve_inventory",
    "process inventory.reserve",
    "send inventory.reserved",
    "saga.step charge_payment",
    "process payment.charge",
    "send payment.charged",
    "saga.step schedule_shipping",
    "process shipping.schedule",
    "send shipping.failed",
    "saga.compensate charge_payment",
    "process payment.refund",
    "send payment.refunded",
    "saga.compensate reserve_inventory",
    "process inventory.release",
    "send inventory.released",
}
"""Every span of an order whose shipping fails, from the engine and the three services."""


def tagged_spans(receiver: OtlpReceiver, saga_id: str) -> list[ReceivedSpan]:
    """Spans naming the saga (``saga.id``, or ``messaging.message.conversation_id`` on
    message spans)."""
    return receiver.of_saga(saga_id)


def saga_spans(receiver: OtlpReceiver, saga_id: str) -> dict[str, ReceivedSpan]:
    """The saga's spans by span id, without the caller's trace.

    The caller (here the demo's front end) and whatever consumes the trigger directly
    (the hotel service listens to ``travel.requested``) stay in the caller's trace, which
    the saga's root links to."""
    tagged = tagged_spans(receiver, saga_id)
    callers = {s.trace_id for s in tagged if s.service == "saga-demo"}
    return {s.span_id: s for s in tagged if s.trace_id not in callers}


def caller_spans(receiver: OtlpReceiver, saga_id: str) -> set[str]:
    """Names of the saga-tagged spans in the caller's trace."""
    tagged = tagged_spans(receiver, saga_id)
    callers = {s.trace_id for s in tagged if s.service == "saga-demo"}
    return {s.name for s in tagged if s.trace_id in callers}


def check_tree(spans: dict[str, ReceivedSpan], name: str) -> tuple[ReceivedSpan, int]:
    """Asserts one trace, one root named ``saga <name>``, no orphans; returns root, depth."""
    assert len({s.trace_id for s in spans.values()}) == 1, "the saga split into traces"
    roots = [s for s in spans.values() if not s.parent_span_id]
    assert [r.name for r in roots] == [f"saga {name}"], "one root, the saga span"
    orphans = [s.name for s in spans.values() if s.parent_span_id and s.parent_span_id not in spans]
    assert not orphans, f"spans whose parent is missing: {orphans}"

    def depth(span: ReceivedSpan) -> int:
        return 1 if not span.parent_span_id else 1 + depth(spans[span.parent_span_id])

    return roots[0], max(depth(s) for s in spans.values())


def test_the_demo_sagas_read_as_sagas() -> None:
    planned, _, _ = plan(DEMO_SAGAS)
    with otlp_receiver() as (receiver, endpoint):
        env = {**otel_env(endpoint), "SAGA_LOG_LEVEL": "WARNING"}
        done = subprocess.run(
            [sys.executable, "-m", "saga", "demo", "--count", str(DEMO_SAGAS), "--timeout", "120"],
            env=env,
            capture_output=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stdout.decode()[-2000:] + done.stderr.decode()[-2000:]
        # The demo stops its processes with SIGTERM: each flushes its exporter on the way out.
        fronts = [s for s in receiver.spans if s.service == "saga-demo"]
        assert fronts, "the demo's front end traced the triggers"
        for p in planned:
            spans = saga_spans(receiver, p.saga_id)
            root, depth = check_tree(spans, p.saga)
            assert root.attributes["saga.outcome"] == p.expect, p
            assert root.attributes["saga.id"] == p.saga_id
            assert root.attributes.get("saga.failure.step") == p.failing_step, p
            assert (root.status_code == ERROR) == (p.expect != "completed"), p
            # the caller (the demo's front end) is linked from the root, not its parent
            assert set(root.links) <= {s.trace_id for s in fronts}
            assert len(root.links) == 1
            trigger = "orders.placed" if p.saga == "order-fulfilment" else "travel.requested"
            assert caller_spans(receiver, p.saga_id) <= {f"send {trigger}", f"process {trigger}"}
            if p.saga == "order-fulfilment":
                assert depth <= 4, f"{p.saga_id}: {depth} levels"
            named = [s for s in spans.values() if s.name == f"saga {p.saga}"]
            assert len(named) == 1


async def terminal_write(kv: KeyValue, saga_id: str) -> asyncio.Task[InstanceRecord]:
    """A task that returns the record of ``saga_id``'s order as soon as its terminal state is
    written (watching from now on)."""
    watcher = await kv.watch(instance_key("order-fulfilment", saga_id))

    async def ended() -> InstanceRecord:
        try:
            async for entry in watcher:
                if entry is None or not entry.value:
                    continue
                record = InstanceRecord.model_validate_json(entry.value)
                if record.state.status.terminal:
                    return record
            raise AssertionError("the watch ended")
        finally:
            await watcher.stop()  # type: ignore[no-untyped-call]

    return asyncio.create_task(ended())


def trace_of(record: InstanceRecord) -> str:
    return record.trace["traceparent"].split("-")[1]


async def test_no_span_is_lost_to_a_kill_right_after_the_terminal_write(
    nats_server: EmbeddedServer, tmp_path: Path
) -> None:
    with otlp_receiver() as (receiver, endpoint):
        log = tmp_path / "processes.log"
        env = otel_env(endpoint)
        # The engine that is killed would export only after 60 s: whatever reaches the
        # receiver from it before the kill is nothing; the rest must come from its successor.
        first = engine(nats_server.url, {**env, "OTEL_BSP_SCHEDULE_DELAY": "60000"}, log)
        services = [service(name, nats_server.url, env, log) for name in SERVICES]
        children = [first, *services]
        nc = await nats.connect(nats_server.url)
        try:
            js = nc.jetstream()
            topology = Topology()

            async def bucket_ready() -> bool:
                try:
                    await js.key_value(topology.instances_bucket)
                except Exception:
                    return False
                return True

            await wait_for(bucket_ready, timeout=30, message="the engine's bucket")
            kv = await js.key_value(topology.instances_bucket)
            saga_id = "killed-1"
            ended = await terminal_write(kv, "killed-1")
            order = new_order(order_id=saga_id, fail="shipping")  # compensates two steps
            await js.publish("orders.placed", json.dumps(order).encode())
            record = await asyncio.wait_for(ended, 60)
            first.send_signal(signal.SIGKILL)  # right after the write: no wait for the export
            first.wait()
            assert record.state.status.value == "compensated"
            assert not any(
                s.service == "saga-engine" for s in saga_spans(receiver, saga_id).values()
            ), "the killed engine exported before the kill: this test would prove nothing"

            second = engine(nats_server.url, env, log)
            children.append(second)
            # The same saga again, undisturbed: what a trace holds when nothing is lost.
            ended = await terminal_write(kv, "undisturbed-1")
            order = new_order(order_id="undisturbed-1", fail="shipping")
            await js.publish("orders.placed", json.dumps(order).encode())
            reference = await asyncio.wait_for(ended, 60)
            killed, undisturbed = trace_of(record), trace_of(reference)

            def in_trace(trace_id: str) -> list[ReceivedSpan]:
                return [s for s in receiver.copies() if s.trace_id == trace_id]

            def arrived() -> bool:
                return all(
                    {s.name for s in in_trace(t)} >= EVERY_SPAN for t in (killed, undisturbed)
                )

            await wait_for(arrived, timeout=30, message="the spans of both sagas")
            # Stop every process (each flushes its exporter): nothing more can arrive, so a
            # late copy would be counted too.
            for child in children:
                child.send_signal(signal.SIGTERM)
            for child in children:
                child.wait(20)
            copies = in_trace(killed)
            assert sorted(s.name for s in copies) == sorted(s.name for s in in_trace(undisturbed))
            assert sorted(s.name for s in copies) == sorted(EVERY_SPAN), (
                "each span of the saga exactly once"
            )
            assert len({s.span_id for s in copies}) == len(copies)
            spans = {s.span_id: s for s in copies}
            root, depth = check_tree(spans, "order-fulfilment")
            assert root.attributes["saga.outcome"] == "compensated"
            assert root.status_code == ERROR
            assert depth <= 4
            for span in copies:  # each participant's work under its step's attempt
                if span.name.startswith("process "):
                    parent = spans[span.parent_span_id]
                    assert parent.attributes["saga.step"] == span.attributes["saga.step"]
                    assert parent.attributes["saga.attempt"] == span.attributes["saga.attempt"]
        finally:
            await nc.close()
            for child in children:
                if child.poll() is None:
                    child.send_signal(signal.SIGTERM)
            for child in children:
                try:
                    child.wait(20)
                except subprocess.TimeoutExpired:
                    child.kill()
                    child.wait()
