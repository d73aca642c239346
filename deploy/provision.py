"""Create the streams, consumers and buckets of the engine and the participants ahead of them.

``saga run --stream-replicas N`` (``SAGA_STREAM_REPLICAS``) creates the engine's own streams,
consumers and buckets with N replicas. The participants are not told: the first one to
start creates the buckets they share (``saga_replies``, ``saga_effects``) and their own
(``hotel_trips``) with one replica. On a 3-node cluster, run this once before them. It
creates those buckets with N replicas, and everything the engine creates, with the
settings ``saga run`` uses, so the engine's NATS user can do without most of its grants
to create streams (deploy/nats/README.md). The engine and the participants find everything
in place and keep it as it is (the engine only ever adds subjects). The participants'
consumers, created later by the participants, inherit the replicas of their stream.

    SAGA_NATS_URL=nats://n1:4222,nats://n2:4222 SAGA_STREAM_REPLICAS=3 SAGA_PARTITIONS=12 \\
        python provision.py --definitions /app/definitions --bucket hotel_trips

With ``--partitions P`` (``SAGA_PARTITIONS``, as given to ``saga run``) it also creates
the work stream ``SAGA_WORK`` and its P pinned consumers. The bucket of the replicas'
heartbeats, ``saga_engines``, is left to the engine, which creates it at its first beat.

It reads the same connection variables as ``saga run`` and the services (``SAGA_NATS_URL``,
``SAGA_NATS_USER``/``_PASSWORD``, ``_TOKEN``, ``_NKEY``, ``_CREDS``, ``_TLS_*``), retries
until the cluster can place the replicas (a fresh cluster needs a few seconds to elect
a meta leader), and exits 0 once everything exists. Running it again is harmless.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from saga.definition import load_definitions
from saga.definition.catalog import Catalog
from saga.engine.admission import Admission, gated_subjects
from saga.engine.settings import EngineSettings
from saga.nats.connection import NatsSettings, connect, settings_from_env
from saga.nats.provision import StreamSettings, provision_engine, provision_partitions
from saga.nats.topology import Topology
from saga.participant.buckets import Buckets
from saga.protocol import EFFECTS_BUCKET

log = logging.getLogger("saga.deploy.provision")


async def provision(
    nats: NatsSettings,
    definitions: Path,
    replicas: int,
    buckets: Sequence[str],
    partitions: int = 0,
) -> list[str]:
    """What ``saga run`` and the participants would create, with ``replicas``; returns the
    events stream's subjects."""
    sagas = load_definitions([definitions])
    settings = StreamSettings(replicas=replicas)
    topology = Topology()
    nc = await connect(nats)
    try:
        js = nc.jetstream()
        catalog = Catalog.of(sagas)
        gated = gated_subjects(catalog, topology.engine_consumer)  # as `saga run` does
        engine = EngineSettings(topology=topology, streams=settings)
        admission = Admission(nc, engine)
        position = await admission.engine_position()
        provisioned = await provision_engine(
            js,
            topology,
            settings,
            listened=[s for d in sagas.values() for s in d.subjects.listened if s not in gated],
            published=[*gated, *(s for d in sagas.values() for s in d.subjects.published)],
        )
        await admission.provision(catalog, position)  # the consumers of sagas with limits
        if partitions:
            pin_timeout = EngineSettings().pin_timeout  # what `saga run` uses
            await provision_partitions(nc, topology, settings, partitions, pin_timeout)
        shared = Buckets(js, settings)
        for name in dict.fromkeys([topology.replies_bucket, EFFECTS_BUCKET, *buckets]):
            await shared.get(name)
        return provisioned.subjects
    finally:
        await nc.close()


async def provision_with_retry(
    nats: NatsSettings,
    definitions: Path,
    replicas: int,
    buckets: Sequence[str],
    partitions: int,
    timeout: float,
) -> list[str]:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await provision(nats, definitions, replicas, buckets, partitions)
        except Exception as exc:  # a cluster still forming refuses with several error types
            if time.monotonic() >= deadline:
                raise
            log.warning("not yet (%s); trying again in 2s", exc)
            await asyncio.sleep(2)


def arguments() -> argparse.ArgumentParser:
    """The options, with their defaults from the environment read now."""
    parser = argparse.ArgumentParser(prog="provision.py", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--nats", default=os.environ.get("SAGA_NATS_URL"), help="[env SAGA_NATS_URL]"
    )
    parser.add_argument(
        "--definitions",
        type=Path,
        default=Path(os.environ.get("SAGA_DEFINITIONS", "definitions")),
        help="[env SAGA_DEFINITIONS]",
    )
    parser.add_argument(
        "--replicas",
        type=int,
        default=int(os.environ.get("SAGA_STREAM_REPLICAS", "3")),
        help="stream, consumer and bucket replicas [env SAGA_STREAM_REPLICAS, default 3]",
    )
    parser.add_argument(
        "--partitions",
        type=int,
        default=int(os.environ.get("SAGA_PARTITIONS", "0")),
        help="also the work stream and its pinned consumers, as `saga run --partitions` "
        "creates them; 0: none [env SAGA_PARTITIONS, default 0]",
    )
    parser.add_argument(
        "--bucket",
        action="append",
        default=[],
        help="another participant bucket to create (repeatable), e.g. hotel_trips",
    )
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds to keep trying")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = arguments()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    if not args.nats:
        parser.error("--nats or SAGA_NATS_URL is required")
    if args.partitions < 0:
        parser.error("--partitions must be 0 or more")
    subjects = asyncio.run(
        provision_with_retry(
            settings_from_env(args.nats, "saga-provision"),
            args.definitions,
            args.replicas,
            args.bucket,
            args.partitions,
            args.timeout,
        )
    )
    log.info(
        "provisioned with %d replica(s) and %d partition(s); events stream subjects: %s",
        args.replicas,
        args.partitions,
        subjects,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
