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
            watcher = await kv.watch(instance_key("order-fulfilment", saga_id))
            order = new_order(order_id=saga_id, fail="shipping")  # compensates two steps
            await js.publish("orders.placed", json.dumps(order).encode())

            async def terminal_write() -> InstanceRecord:
                async for entry in watcher:
                    if entry is None or not entry.value:
                        continue
                    record = InstanceRecord.model_validate_json(entry.value)
                    if record.state.status.terminal:
                        return record
                raise AssertionError("the watch ended")

            record = await asyncio.wait_for(terminal_write(), 60)
            first.send_signal(signal.SIGKILL)  # right after the write: no wait for the export
            first.wait()
            await watcher.stop()  # type: ignore[no-untyped-call]
            assert record.state.status.value == "compensated"
            assert not any(
                s.service == "saga-engine" for s in saga_spans(receiver, saga_id).values()
            ), "the killed engine exported before the kill: this test would prove nothing"

            second = engine(nats_server.url, env, log)
            children.append(second)
            wanted = {
                "saga order-fulfilment",
                "saga.step reserve_inventory",
                "saga.step charge_payment",
                "saga.step schedule_shipping",
                "saga.compensate charge_payment",
                "saga.compensate reserve_inventory",
            }

            def recovered() -> bool:
                spans = saga_spans(receiver, saga_id).values()
                return wanted <= {s.name for s in spans if s.service == "saga-engine"}

            await wait_for(recovered, timeout=30, message="the saga's spans, from the record")
            spans = saga_spans(receiver, saga_id)
            copies = [s.name for s in tagged_spans(receiver, saga_id) if s.name in wanted]
            assert sorted(copies) == sorted(wanted), "each span exactly once, not even a copy"
            root, depth = check_tree(spans, "order-fulfilment")
            assert root.attributes["saga.outcome"] == "compensated"
            assert root.status_code == ERROR
            assert depth <= 4
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
