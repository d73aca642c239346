"""The least-privilege NATS permissions in ``deploy/nats/``: parsed and checked, then used.

The example server configuration runs the engine, the six services, the two front ends
and an operator, each as its own user, through real sagas with no permission violation;
and a user that steps outside its role is refused. Partitioned engine replicas (routing,
pinned pulls, heartbeats, a handover) run under the engine's permissions too.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from nats.errors import TimeoutError as NatsTimeoutError
from pydantic import SecretStr

from saga.client import instance_store, list_instances
from saga.definition import load_definitions
from saga.engine import Engine, EngineSettings
from saga.engine.partitions import partition_of
from saga.nats.connection import NatsSettings, connect
from saga.nats.dlq import list_dead_letters
from saga.nats.server import EmbeddedServer, find_server_binary
from saga.nats.topology import Topology, instance_key
from saga.participant.routes import RouteKind
from saga.participant.runner import load_app
from services.orders import new_order, place_orders
from services.trips import new_trip, request_trips
from tests.conftest import DEFINITIONS, ROOT
from tests.support import wait_for

DEPLOY = ROOT / "deploy" / "nats"
CONF = DEPLOY / "nats-server.conf"
PERMISSIONS: dict[str, dict[str, Any]] = json.loads((DEPLOY / "permissions.json").read_text())
SERVICES = ("inventory", "payment", "shipping", "flight", "hotel", "car")
USERS = {
    "saga-engine": "SAGA_ENGINE",
    "saga-operator": "SAGA_OPERATOR",
    "orders": "ORDERS",
    "trips": "TRIPS",
    **{name: name.upper() for name in SERVICES},
}
TOO_BROAD = {">", "$JS.>", "$JS.API.>", "$KV.>", "$JS.API.STREAM.>", "$JS.API.CONSUMER.>"}
PARTITIONED = EngineSettings(partitions=2, pin_timeout=3.0)
CHILD_ENV = {"PYTHONPATH": str(ROOT), "SAGA_ADMIN_ADDR": "off", "SAGA_LOG_LEVEL": "WARNING"}


def password(user: str) -> str:
    return f"pw-{user}-7c1d"


def allowed(role: str, direction: str) -> list[str]:
    return list(PERMISSIONS[role][direction]["allow"])


# -- static checks ---------------------------------------------------------------------------


def test_the_server_accepts_the_example_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    for user, variable in USERS.items():
        monkeypatch.setenv(f"{variable}_PASSWORD", password(user))
    checked = subprocess.run(
        [find_server_binary(), "-t", "-c", str(CONF)], capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stderr + checked.stdout


@pytest.mark.parametrize("role", sorted(PERMISSIONS))
def test_no_role_gets_a_wildcard_grant(role: str) -> None:
    for subject in allowed(role, "publish") + allowed(role, "subscribe"):
        assert subject not in TOO_BROAD, f"{role} may use {subject}"
        if subject.startswith("$JS.API."):
            tokens = subject.split(".")
            assert len(tokens) >= 5, f"{role}: {subject} names no stream"
            assert "*" not in tokens[:5], f"{role}: {subject} spans streams"
            assert ">" not in tokens[:5], f"{role}: {subject} spans streams"


def test_the_engine_publishes_every_command_and_consumes_nothing_else() -> None:
    definitions = load_definitions([DEFINITIONS]).values()
    commands = {s for d in definitions for s in d.subjects.published}
    granted = set(allowed("SAGA_ENGINE_PERMISSIONS", "publish"))
    assert commands <= granted
    replies = {s for d in definitions for s in d.subjects.listened}
    assert not replies & granted, "the engine must not be able to forge replies or triggers"


@pytest.mark.parametrize("service", SERVICES)
def test_each_service_may_publish_exactly_its_own_replies(service: str) -> None:
    app = load_app(f"services.{service}:app")
    replies = {
        subject
        for route in app.routes.values()
        if route.kind is not RouteKind.LISTENER
        for subject in (route.success, route.failure)
        if subject
    }
    granted = allowed(f"{service.upper()}_PERMISSIONS", "publish")
    plain = {s for s in granted if not s.startswith(("$", "saga."))}
    assert plain == replies
    assert f"$JS.ACK.SAGA_EVENTS.{service}.>" in granted
    assert f"$KV.saga_effects.{service}.>" in granted
    assert not [s for s in granted if "saga_instances" in s], "the engine's state is not theirs"


# -- the configuration in use ----------------------------------------------------------------


@pytest.fixture
def secured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[EmbeddedServer]:
    for user, variable in USERS.items():
        monkeypatch.setenv(f"{variable}_PASSWORD", password(user))
    # The example as it is, less the two lines the test server sets by flag (its store and
    # port); nats-server refuses a store_dir given both ways.
    kept = [
        line
        for line in CONF.read_text().splitlines()
        if not line.strip().startswith(("store_dir:", "listen:"))
    ]
    conf = tmp_path / "nats-server.conf"
    conf.write_text("\n".join(kept) + "\n")
    (tmp_path / "permissions.json").write_text((DEPLOY / "permissions.json").read_text())
    server = EmbeddedServer(store_dir=tmp_path / "nats", extra_args=["-c", str(conf)]).start()
    yield server
    server.close()


def as_user(server: EmbeddedServer, user: str) -> NatsSettings:
    return NatsSettings(url=server.url, name=user, user=user, password=SecretStr(password(user)))


def spawn(args: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, *args], stdout=out, stderr=out, env={**os.environ, **env}, cwd=ROOT
        )


def violations(server: EmbeddedServer) -> list[str]:
    assert server.store_dir is not None
    text = (server.store_dir / "nats-server.log").read_text()
    return [line for line in text.splitlines() if "Violation" in line]


def spawn_services(server: EmbeddedServer, tmp_path: Path) -> list[subprocess.Popen[bytes]]:
    """The six example services, each as its own user."""
    children = []
    for name in SERVICES:
        url = f"nats://{name}:{password(name)}@127.0.0.1:{server.port}"
        args = ["-m", f"services.{name}", "--nats", url, "--log-level", "WARNING"]
        children.append(spawn(args, tmp_path / f"{name}.log", CHILD_ENV))
    return children


def stop_all(children: list[subprocess.Popen[bytes]]) -> None:
    for child in children:
        child.send_signal(signal.SIGTERM)
    for child in children:
        try:
            child.wait(15)
        except subprocess.TimeoutExpired:
            child.kill()


async def test_every_role_does_its_work_with_no_violation(
    secured: EmbeddedServer, tmp_path: Path
) -> None:
    engine_env = {
        **CHILD_ENV,
        "SAGA_NATS_USER": "saga-engine",
        "SAGA_NATS_PASSWORD": password("saga-engine"),
    }
    children = [
        spawn(
            ["-m", "saga", "run", "--nats", secured.url, "--definitions", str(DEFINITIONS)],
            tmp_path / "engine.log",
            engine_env,
        ),
        *spawn_services(secured, tmp_path),
    ]
    try:
        orders_nc = await connect(as_user(secured, "orders"))
        trips_nc = await connect(as_user(secured, "trips"))
        operator_nc = await connect(as_user(secured, "saga-operator"))
        js = operator_nc.jetstream()

        async def engine_up() -> bool:
            try:
                await instance_store(operator_nc, Topology())
            except Exception:
                return False
            return True

        await wait_for(engine_up, timeout=30, message="the engine's bucket")
        orders = [new_order(f"perm-o{i}", fail="payment" if i else None) for i in range(2)]
        trips = [new_trip(f"perm-t{i}", fail="car" if i else None) for i in range(2)]
        await asyncio.wait_for(place_orders(orders_nc.jetstream(), orders), 30)
        await asyncio.wait_for(request_trips(trips_nc.jetstream(), trips), 30)
        store = await instance_store(operator_nc, Topology())

        async def all_ended() -> bool:
            states = await list_instances(store, limit=100)
            ended = [s for s in states if s.status.value in ("completed", "compensated")]
            return len(ended) == 4

        await wait_for(all_ended, timeout=60, message="4 sagas to end")
        assert await list_dead_letters(js) == []  # what `saga dlq list` does
        assert violations(secured) == []
        await refused_outside_the_role(secured, orders_nc, js)
        for nc in (orders_nc, trips_nc, operator_nc):
            await nc.close()
    finally:
        stop_all(children)


async def refused_outside_the_role(
    server: EmbeddedServer, orders_nc: Any, operator_js: Any
) -> None:
    """A front end cannot forge a reply; a service cannot read the engine's state."""
    with pytest.raises((NatsTimeoutError, TimeoutError)):
        await orders_nc.jetstream().publish("payment.charged", b"{}", timeout=1)
    payment = await connect(as_user(server, "payment"))
    try:
        with pytest.raises(Exception):  # noqa: B017, PT011 - refused, whatever nats-py calls it
            await payment.jetstream(timeout=1).key_value("saga_instances")
    finally:
        await payment.close()

    async def logged() -> bool:
        found = "\n".join(violations(server))
        return '"payment.charged"' in found and "KV_saga_instances" in found

    await wait_for(logged, message="both refusals in the server log")


def one_id_per_partition(saga: str, prefix: str) -> list[str]:
    """Saga ids whose instances fall in each of the partitions, in partition order."""
    found: dict[int, str] = {}
    n = 0
    while len(found) < PARTITIONED.partitions:
        saga_id = f"{prefix}{n}"
        found.setdefault(partition_of(instance_key(saga, saga_id), PARTITIONED.partitions), saga_id)
        n += 1
    return [found[p] for p in sorted(found)]


async def test_partitioned_engine_replicas_work_with_no_violation(
    secured: EmbeddedServer, tmp_path: Path
) -> None:
    """Two replicas as ``saga-engine``: they create SAGA_WORK, its pinned consumers and the
    ``saga_engines`` bucket, route, pull pinned, beat, and one hands its partition over."""
    children = spawn_services(secured, tmp_path)
    definitions = load_definitions([DEFINITIONS])
    engines: list[Engine] = []
    try:
        for _ in range(2):
            engine = Engine(
                await connect(as_user(secured, "saga-engine")), definitions, PARTITIONED
            )
            await engine.start()
            engines.append(engine)
        first, second = engines

        async def split() -> bool:
            return len(first.owned) == len(second.owned) == 1

        await wait_for(split, timeout=15, message="one partition per replica")
        orders_nc = await connect(as_user(secured, "orders"))
        trips_nc = await connect(as_user(secured, "trips"))
        operator_nc = await connect(as_user(secured, "saga-operator"))
        store = await instance_store(operator_nc, Topology())

        async def ended(count: int) -> bool:
            states = await list_instances(store, limit=100)
            done = [s for s in states if s.status.value in ("completed", "compensated")]
            return len(done) == count

        order_ids = one_id_per_partition("order-fulfilment", "part-o")
        trip_ids = one_id_per_partition("travel-booking", "part-t")
        orders = [new_order(i, fail="payment" if n else None) for n, i in enumerate(order_ids)]
        trips = [new_trip(i, fail="car" if n else None) for n, i in enumerate(trip_ids)]
        await asyncio.wait_for(place_orders(orders_nc.jetstream(), orders), 30)
        await asyncio.wait_for(request_trips(trips_nc.jetstream(), trips), 30)
        await wait_for(lambda: ended(4), timeout=60, message="4 sagas to end on two replicas")

        # The first replica leaves: it unpins its partition and deletes its heartbeat.
        engines.remove(first)
        await first.stop()
        await first.nc.drain()

        async def second_owns_all() -> bool:
            return sorted(second.owned) == list(range(PARTITIONED.partitions))

        await wait_for(second_owns_all, timeout=15, message="the other replica owns both")
        later = [new_order(i) for i in one_id_per_partition("order-fulfilment", "part-later-o")]
        await asyncio.wait_for(place_orders(orders_nc.jetstream(), later), 30)
        await wait_for(lambda: ended(6), timeout=60, message="2 more sagas to end on one replica")

        work = await second.js.stream_info(PARTITIONED.topology.work_stream)
        assert work.state.last_seq > 0, "nothing was routed through the work stream"
        assert await list_dead_letters(operator_nc.jetstream()) == []
        for nc in (orders_nc, trips_nc, operator_nc):
            await nc.close()
    finally:
        for engine in engines:
            await engine.stop()  # unpins its partitions: under the permissions too
            await engine.nc.drain()
        stop_all(children)
    assert violations(secured) == []
