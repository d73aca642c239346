"""Create the engine's streams, consumers and buckets with N replicas, before ``saga run`` does.

``saga run`` provisions everything itself, but always with one replica: it has no setting
for more yet. On a 3-node cluster, run this once first. The engine then finds every
stream, consumer and bucket in place and keeps them as they are (it only ever adds
subjects), so they stay replicated. The participants' consumers, created later by the
participants themselves, inherit the replicas of their stream.

    SAGA_NATS_URL=nats://n1:4222,nats://n2:4222 SAGA_STREAM_REPLICAS=3 \\
        python provision.py --definitions /app/definitions --bucket hotel_trips

It reads the same connection variables as ``saga run`` (``SAGA_NATS_URL``,
``SAGA_NATS_USER``/``_PASSWORD``, ``_TOKEN``, ``_NKEY``, ``_CREDS``, ``_TLS_*``), retries
until the cluster can place the replicas (a fresh cluster needs a few seconds to elect
a meta leader), and exits 0 once everything exists. Running it again is harmless.
Once the engine has a replicas setting of its own, this script can go.
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
from saga.nats.connection import NatsSettings, connect
from saga.nats.provision import StreamSettings, provision_engine
from saga.nats.topology import Topology, listened_subjects, published_subjects
from saga.participant.buckets import Buckets
from saga.participant.settings import EFFECTS_BUCKET

log = logging.getLogger("saga.deploy.provision")

ENV_OPTIONS = {
    "user": "SAGA_NATS_USER",
    "password": "SAGA_NATS_PASSWORD",
    "token": "SAGA_NATS_TOKEN",
    "nkey_seed_file": "SAGA_NATS_NKEY",
    "creds_file": "SAGA_NATS_CREDS",
    "tls_ca_file": "SAGA_NATS_TLS_CA",
    "tls_cert_file": "SAGA_NATS_TLS_CERT",
    "tls_key_file": "SAGA_NATS_TLS_KEY",
}


def connection_from_env(url: str) -> NatsSettings:
    fields = {key: os.environ[env] for key, env in ENV_OPTIONS.items() if os.environ.get(env)}
    return NatsSettings(url=url, name="saga-provision", **fields)


async def provision(
    nats: NatsSettings, definitions: Path, replicas: int, buckets: Sequence[str]
) -> list[str]:
    """Everything ``saga run`` would create, with ``replicas``; returns the events subjects."""
    sagas = load_definitions([definitions])
    settings = StreamSettings(replicas=replicas)
    topology = Topology()
    nc = await connect(nats)
    try:
        js = nc.jetstream()
        provisioned = await provision_engine(
            js,
            topology,
            settings,
            listened=[s for d in sagas.values() for s in listened_subjects(d)],
            published=[s for d in sagas.values() for s in published_subjects(d)],
        )
        shared = Buckets(js, settings)
        for name in dict.fromkeys([topology.replies_bucket, EFFECTS_BUCKET, *buckets]):
            await shared.get(name)
        return provisioned.subjects
    finally:
        await nc.close()


async def provision_with_retry(
    nats: NatsSettings, definitions: Path, replicas: int, buckets: Sequence[str], timeout: float
) -> list[str]:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await provision(nats, definitions, replicas, buckets)
        except Exception as exc:  # a cluster still forming refuses with several error types
            if time.monotonic() >= deadline:
                raise
            log.warning("not yet (%s); trying again in 2s", exc)
            await asyncio.sleep(2)


def main(argv: Sequence[str] | None = None) -> int:
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
        "--bucket",
        action="append",
        default=[],
        help="another participant bucket to create (repeatable), e.g. hotel_trips",
    )
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds to keep trying")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    if not args.nats:
        parser.error("--nats or SAGA_NATS_URL is required")
    subjects = asyncio.run(
        provision_with_retry(
            connection_from_env(args.nats),
            args.definitions,
            args.replicas,
            args.bucket,
            args.timeout,
        )
    )
    log.info("provisioned with %d replica(s); events stream subjects: %s", args.replicas, subjects)
    return 0


if __name__ == "__main__":
    sys.exit(main())
