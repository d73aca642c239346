"""Engine and services as separate processes export over OTLP/HTTP to a real receiver:
one saga is one trace, across every service, even when the engine is killed mid-saga."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import nats
import pytest

from saga.client import find_instance, instance_store
from saga.nats.server import EmbeddedServer
from saga.nats.topology import Topology
from services.orders import new_order
from tests.otlp_receiver import OtlpReceiver, otlp_receiver
from tests.support import wait_for

DEFINITIONS = Path(__file__).parent / "tracing_defs"
SERVICES = ("inventory", "payment", "shipping")


@pytest.fixture
def receiver() -> Iterator[tuple[OtlpReceiver, str]]:
    with otlp_receiver() as found:
        yield found


def otel_env(endpoint: str) -> dict[str, str]:
    return {
        **os.environ,
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_METRICS_EXPORTER": "none",
        "OTEL_BSP_SCHEDULE_DELAY": "100",
        "SAGA_LOG_LEVEL": "WARNING",
    }


def engine(url: str, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "saga", "run", "--nats", url, "--definitions", str(DEFINITIONS)],
            stdout=out,
            stderr=out,
            env=env,
        )


def service(name: str, url: str, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", f"services.{name}", "--nats", url, "--log-level", "WARNING"],
            stdout=out,
            stderr=out,
            env=env,
        )


async def test_one_trace_across_processes_and_an_engine_restart(
    nats_server: EmbeddedServer, receiver: tuple[OtlpReceiver, str], tmp_path: Path
) -> None:
    spans, endpoint = receiver
    env = otel_env(endpoint)
    log = tmp_path / "processes.log"
    eng = engine(nats_server.url, env, log)
    services = [service(name, nats_server.url, env, log) for name in SERVICES]
    nc = await nats.connect(nats_server.url)
    try:
        js = nc.jetstream()
        await wait_for(lambda: _provisioned(js), timeout=30, message="the engine's bucket")
        order = new_order(order_id="traced-1", simulate={"payment": "delay:1.5"})
        await js.publish("orders.placed", json.dumps(order).encode())
        store = await instance_store(js, Topology())

        async def charging() -> bool:
            state = await find_instance(store, "traced-1", "order-fulfilment")
            return state is not None and state.steps["charge_payment"].status.value == "active"

        await wait_for(charging, message="the payment step to start")
        # No wait for the export: the spans the killed engine held are written again by the
        # next one, from the record (the payment takes 1.5 s, so this is still mid-saga).
        eng.send_signal(signal.SIGKILL)  # mid-saga: the payment service is still working
        eng.wait()
        eng = engine(nats_server.url, env, log)

        async def completed() -> bool:
            state = await find_instance(store, "traced-1", "order-fulfilment")
            return state is not None and state.status.value == "completed"

        await wait_for(completed, timeout=30, message="the saga to complete after the restart")
        wanted = {"saga-engine", *SERVICES}

        def every_service_reported() -> bool:
            found = spans.of_saga("traced-1")
            names = {s.name for s in found}
            return wanted <= {s.service for s in found} and "saga.step schedule_shipping" in names

        await wait_for(every_service_reported, timeout=15, message="spans from every process")
        found = spans.of_saga("traced-1")
        assert {s.trace_id for s in found} == {found[0].trace_id}, (
            "the saga split into several traces"
        )
        assert {"saga-engine", *SERVICES} <= {s.service for s in found}
        names = {s.name for s in found}
        assert {
            "saga order-fulfilment",
            "saga.step reserve_inventory",
            "saga.step charge_payment",
            "send payment.charged",
            "saga.step schedule_shipping",
            "process shipping.schedule",
        } <= names
    finally:
        await nc.close()
        for child in [eng, *services]:
            child.send_signal(signal.SIGTERM)
        for child in [eng, *services]:
            child.wait(20)


async def _provisioned(js: object) -> bool:
    try:
        await js.key_value("saga_instances")  # type: ignore[attr-defined]
    except Exception:
        return False
    return True
