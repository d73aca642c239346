"""Thread CPU per span, with the project's telemetry setup (issue 15, round 4).

    python bench/span_cost.py [--sagas N] [--json]

Traces N completed ``bench-order`` sagas the way the engine and a participant do,
without NATS: the engine's part (``new_saga_trace`` when the saga starts, ``carry`` on
each command, ``emit_closed`` after each stored transition: 4 spans per saga) and a
participant's part (``consuming`` and ``sending`` around each of the 3 commands: 6
spans per saga), then flushes. Telemetry comes from :func:`telemetry_from_env` with an
OTLP/HTTP endpoint (the bench's own receiver, on a thread of its own), so the batch
processor and exporter are the ones a traced engine uses. Reported: the calling
thread's CPU per span for each part, and the exporter thread's CPU per span
(encoding and posting), each the median of 5 rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.otlp import OtlpReceiver
from saga.core import InstanceState, SagaTriggered, StepSucceeded, decide
from saga.core.commands import PublishEvent
from saga.definition import load_definitions
from saga.protocol import HEADER_MSG_ID
from saga.telemetry import Telemetry, telemetry_from_env

DEFINITIONS = Path(__file__).resolve().parent / "definitions"
T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
TRIGGER = {
    "order_id": "o-1",
    "customer_id": "c-1",
    "total": 42.0,
    "items": [{"sku": "a", "qty": 1}],
    "address": {"city": "X"},
    "fail": False,
}
REPLIES = {
    "reserve_inventory": {"reservation_id": "r-1"},
    "charge_payment": {"payment_id": "p-1", "amount": 42.0},
    "schedule_shipping": {"tracking_id": "t-1"},
}


def transitions() -> list[tuple[InstanceState, list[PublishEvent]]]:
    """The states and commands of one completed saga, transition by transition."""
    definition = load_definitions([DEFINITIONS])["bench-order"]
    state: InstanceState | None = None
    found: list[tuple[InstanceState, list[PublishEvent]]] = []
    now = T0
    for event in [
        SagaTriggered("o-1", TRIGGER),
        *(StepSucceeded(step, reply) for step, reply in REPLIES.items()),
    ]:
        now += timedelta(milliseconds=5)
        decision = decide(definition, state, event, now)
        assert decision.error is None, decision.error
        assert decision.state is not None
        state = decision.state
        commands = [c for c in decision.commands if isinstance(c, PublishEvent)]
        found.append((state, commands))
    return found


def engine_part(telemetry: Telemetry, saga: list[tuple[InstanceState, list[PublishEvent]]]) -> Any:
    """What a traced engine does for one saga; returns the commands' headers."""
    from saga.telemetry.engine_spans import carry
    from saga.telemetry.saga_spans import emit_closed, new_saga_trace

    saga_trace = new_saga_trace(telemetry, "bench-order", None)
    done, sent = 0, []
    for state, commands in saga:
        for command in commands:
            headers = {**command.headers, HEADER_MSG_ID: command.msg_id}
            carry(headers, state, saga_trace)
            sent.append((command.subject, headers))
        emit_closed(telemetry, state, saga_trace, done, len(state.history))
        done = len(state.history)
    return sent


async def participant_part(
    telemetry: Telemetry, commands: list[tuple[str, dict[str, str]]]
) -> None:
    """What a traced participant does for each command: ``process`` and ``send`` spans."""
    from saga.telemetry.participant_spans import delivery_attributes
    from saga.telemetry.spans import consuming, sending

    for sequence, (subject, headers) in enumerate(commands):
        if not headers.get("Saga-Step"):
            continue  # a status event: no participant handles it
        saga_id = headers.get("Saga-Id")
        with consuming(
            telemetry,
            subject,
            headers,
            saga_id=saga_id,
            message_id=f"SAGA_EVENTS:{sequence}",
            attributes=delivery_attributes(headers, 1),
        ):
            reply = {**headers, HEADER_MSG_ID: f"{headers[HEADER_MSG_ID]}:reply"}
            with sending(telemetry, subject + ".done", reply, saga_id=saga_id, message_id="x"):
                pass


def exporter_thread(telemetry: Telemetry) -> threading.Thread:
    processor = telemetry.providers[0]._active_span_processor._span_processors[0]
    thread: threading.Thread = processor._batch_processor._worker_thread
    return thread


def thread_cpu(thread: threading.Thread) -> float:
    assert thread.ident is not None
    return time.clock_gettime(time.pthread_getcpuclockid(thread.ident))


def measure(telemetry: Telemetry, sagas: int, work: Callable[[], int]) -> tuple[float, float]:
    """µs of this thread's and of the exporter thread's CPU per span."""
    exporter = exporter_thread(telemetry)
    telemetry.flush()
    before, before_exp = time.thread_time(), thread_cpu(exporter)
    spans = 0
    queue = exporter_queue(telemetry)
    for _ in range(sagas):
        spans += work()
        if queue() > 1024:  # let the exporter catch up (the queue drops beyond 2048)
            drain(queue, 256)
    mine = time.thread_time() - before
    drain(queue, 0)  # the rest is exported by the exporter's thread, as in the engine
    time.sleep(0.2)  # the last export in progress
    exported = thread_cpu(exporter) - before_exp
    return mine / spans * 1e6, exported / spans * 1e6


def drain(queue: Callable[[], int], down_to: int) -> None:
    deadline = time.monotonic() + 60
    while queue() > down_to and time.monotonic() < deadline:
        time.sleep(0.005)


def exporter_queue(telemetry: Telemetry) -> Callable[[], int]:
    processor = telemetry.providers[0]._active_span_processor._span_processors[0]
    batch = processor._batch_processor
    return lambda: len(batch._queue)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python bench/span_cost.py", description=__doc__)
    parser.add_argument("--sagas", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    loop = asyncio.new_event_loop()
    receiver = OtlpReceiver()
    threading.Thread(target=loop.run_forever, daemon=True).start()
    asyncio.run_coroutine_threadsafe(receiver.start(), loop).result(10)
    os.environ.update(
        {
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            "OTEL_BSP_SCHEDULE_DELAY": "100",  # drains sooner between rounds; CPU per span alike
        }
    )
    os.environ.pop("OTEL_SDK_DISABLED", None)
    telemetry = telemetry_from_env("span-cost")
    saga = transitions()
    commands = engine_part(telemetry, saga)

    def engine() -> int:
        engine_part(telemetry, saga)
        return 4

    participant_loop = asyncio.new_event_loop()

    def participant() -> int:
        participant_loop.run_until_complete(participant_part(telemetry, commands))
        return 6

    results: dict[str, list[tuple[float, float]]] = {"engine": [], "participant": []}
    for _ in range(args.rounds):
        for name, work in (("engine", engine), ("participant", participant)):
            results[name].append(measure(telemetry, args.sagas, work))
    report = {
        name: {
            "caller_us_per_span": round(statistics.median(r[0] for r in runs), 1),
            "caller_us_range": [
                round(min(r[0] for r in runs), 1),
                round(max(r[0] for r in runs), 1),
            ],
            "exporter_us_per_span": round(statistics.median(r[1] for r in runs), 1),
            "exporter_us_range": [
                round(min(r[1] for r in runs), 1),
                round(max(r[1] for r in runs), 1),
            ],
        }
        for name, runs in results.items()
    }
    report["otlp_bytes_per_span"] = round(
        receiver.received["/v1/traces"] / max(1, receiver.spans() or 1), 1
    )
    telemetry.shutdown()
    asyncio.run_coroutine_threadsafe(receiver.stop(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    if args.json:
        print(json.dumps(report, indent=2, allow_nan=False))
        return
    for name in ("engine", "participant"):
        r = report[name]
        print(
            f"{name:<12} caller {r['caller_us_per_span']:6.1f} µs/span {r['caller_us_range']}  "
            f"exporter {r['exporter_us_per_span']:6.1f} µs/span {r['exporter_us_range']}"
        )
    print(f"OTLP bytes per span {report['otlp_bytes_per_span']}")


if __name__ == "__main__":
    main()
