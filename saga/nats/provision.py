"""Create (idempotently) the streams, consumers and bucket the engine needs.

Settings are explicit here because they are promises: how long a crashed engine's
unacked messages take to come back, how long a republish is deduplicated, how
often a poison message is retried.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from nats.aio.client import Client
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    KeyValueConfig,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import BadRequestError, NotFoundError
from nats.js.kv import KeyValue

from saga.errors import ProvisioningError
from saga.nats.pinned import ensure_pinned_consumer
from saga.nats.topology import Topology
from saga.protocol import (
    DLQ_PREFIX,
    INDEX_PREFIX,
    SEARCH_PREFIX,
    STATUS_PREFIX,
    TIMER_FIRE_PREFIX,
    TIMER_SCHEDULE_PREFIX,
    WORK_PREFIX,
    kv_stream,
)

log = logging.getLogger("saga.provision")


@dataclass(frozen=True)
class StreamSettings:
    """Durability and delivery settings shared by the engine's streams and consumers."""

    replicas: int = 1
    """Stream and bucket replicas (3 on a 3-node cluster)."""
    storage: StorageType = StorageType.FILE
    duplicate_window: float = 120.0
    """Seconds during which a republished ``Nats-Msg-Id`` is dropped by the server."""
    events_max_age: float = 7 * 24 * 3600.0
    """Seconds saga events are kept (every consumer has long read them by then)."""
    dlq_max_age: float = 30 * 24 * 3600.0
    ack_wait_backoff: tuple[float, ...] = (2.0, 4.0, 8.0, 16.0, 30.0)
    """Redelivery delays of an unacked message; the first is how fast a crashed
    engine's in-flight messages come back (2 s, not the 30 s default)."""
    max_deliver: int = 10
    """Deliveries before a message is given up (then dead-lettered by its handler)."""
    max_ack_pending: int = 2000
    native_timers: bool = True
    """Use the server's message schedules (2.12+) for timers when it supports them; otherwise
    (or when False) timers are held back by delayed redelivery, which any JetStream server does."""


@dataclass
class Provisioned:
    instances: KeyValue
    native_timers: bool
    """True when the timers stream accepts message schedules."""
    instances_expire: bool = False
    """True when the instances bucket accepts per-message TTLs (finished instances expire)."""
    index: bool = False
    """True when the index stream (list and find by status, time, search attributes) is there."""
    subjects: list[str] = field(default_factory=list)


async def ensure_stream(js: JetStreamContext, wanted: StreamConfig) -> StreamConfig:
    """Create the stream, or add our subjects to an existing one; refuse a conflicting one.

    Returns the configuration in force, which tells what the server really accepted.
    """
    assert wanted.name is not None
    try:
        info = await js.stream_info(wanted.name)
    except NotFoundError:
        try:
            created = await js.add_stream(wanted)
        except BadRequestError as exc:
            raise ProvisioningError(
                f"cannot create stream {wanted.name}: {exc.description}"
            ) from exc
        log.info("created stream %s", wanted.name)
        return created.config
    have = info.config
    for attr in ("retention", "storage"):
        want_value, have_value = getattr(wanted, attr), getattr(have, attr)
        if want_value is not None and want_value != have_value:
            raise ProvisioningError(
                f"stream {wanted.name} exists with {attr}={have_value!r}, we need {want_value!r}; "
                "delete it or configure other stream names"
            )
    missing = [s for s in wanted.subjects or [] if s not in (have.subjects or [])]
    if missing:
        have.subjects = [*(have.subjects or []), *missing]
        try:
            await js.update_stream(have)
        except BadRequestError as exc:
            raise ProvisioningError(
                f"cannot add subjects {missing} to stream {wanted.name}: {exc.description}"
            ) from exc
        log.info("stream %s now also captures %s", wanted.name, missing)
    return have


async def allow_msg_ttl(
    js: JetStreamContext,
    have: StreamConfig,
    without: str = "cancelled timers will be purged one by one",
) -> bool:
    """Turn on per-message TTLs on a stream made before the engine used them.

    Without them the engine still works (``without`` says how), so a refusal is a warning:
    timers cancel by purging the timer's subject, one API request each, and finished
    instances are kept for ever.
    """
    updated = copy.copy(have)
    updated.allow_msg_ttl = True
    try:
        await js.update_stream(updated)
    except NatsError as exc:  # refused, or not permitted (then no answer: a timeout)
        log.warning(
            "cannot allow per-message TTLs on stream %s (%s): %s; set allow_msg_ttl on it, "
            "or let the engine update it",
            have.name,
            getattr(exc, "description", None) or type(exc).__name__,
            without,
        )
        return False
    have.allow_msg_ttl = True
    log.info("stream %s now allows per-message TTLs", have.name)
    return True


async def ensure_consumer(
    js: JetStreamContext,
    stream: str,
    name: str,
    subjects: list[str],
    settings: StreamSettings,
    max_deliver: int | None = None,
) -> None:
    """A durable pull consumer; its filter follows the definitions (the ack floor is kept)."""
    config = ConsumerConfig(
        durable_name=name,
        deliver_policy=DeliverPolicy.ALL,
        ack_policy=AckPolicy.EXPLICIT,
        backoff=list(settings.ack_wait_backoff),
        max_deliver=max_deliver or settings.max_deliver,
        max_ack_pending=settings.max_ack_pending,
        filter_subjects=sorted(set(subjects)) if len(set(subjects)) > 1 else None,
        filter_subject=subjects[0] if len(set(subjects)) == 1 else None,
        num_replicas=settings.replicas if settings.replicas > 1 else None,
    )
    try:
        await js.add_consumer(stream, config)
    except BadRequestError as exc:
        raise ProvisioningError(
            f"cannot create consumer {name} on {stream}: {exc.description}"
        ) from exc


async def provision_engine(
    js: JetStreamContext,
    topology: Topology,
    settings: StreamSettings,
    listened: Iterable[str],
    published: Iterable[str],
) -> Provisioned:
    """Everything the engine needs; safe to call on every start and from every replica."""
    listened = sorted(set(listened))
    subjects = sorted({*listened, *published, f"{STATUS_PREFIX}.>"})
    common: dict[str, Any] = {
        "num_replicas": settings.replicas,
        "storage": settings.storage,
        "duplicate_window": settings.duplicate_window,
    }
    await ensure_stream(
        js,
        StreamConfig(
            name=topology.events_stream,
            subjects=subjects,
            retention=RetentionPolicy.LIMITS,
            max_age=settings.events_max_age,
            allow_direct=True,
            **common,
        ),
    )
    timers = await ensure_stream(
        js,
        StreamConfig(
            name=topology.timers_stream,
            subjects=[f"{TIMER_SCHEDULE_PREFIX}.>", f"{TIMER_FIRE_PREFIX}.>"],
            retention=RetentionPolicy.LIMITS,
            allow_msg_schedules=True if settings.native_timers else None,
            # A cancelled timer's schedule is replaced by a message that expires on its own.
            allow_msg_ttl=True if settings.native_timers else None,
            max_msgs_per_subject=1,
            **common,
        ),
    )
    native_timers = settings.native_timers and bool(timers.allow_msg_schedules)
    if native_timers and not timers.allow_msg_ttl:
        await allow_msg_ttl(js, timers)
    if not native_timers:
        log.warning(
            "timers use delayed redelivery: the server lacks message schedules (2.12+)"
            " or they are turned off"
        )
    await ensure_stream(
        js,
        StreamConfig(
            name=topology.dlq_stream,
            subjects=[f"{DLQ_PREFIX}.>"],
            retention=RetentionPolicy.LIMITS,
            max_age=settings.dlq_max_age,
            **common,
        ),
    )
    await ensure_consumer(js, topology.events_stream, topology.engine_consumer, listened, settings)
    # A held-back timer is redelivered once per nak: no delivery limit on this consumer
    # (the engine itself dead-letters a timer that keeps failing).
    await ensure_consumer(
        js,
        topology.timers_stream,
        topology.timer_consumer,
        [f"{TIMER_FIRE_PREFIX}.>"],
        settings,
        max_deliver=-1,
    )
    instances = await ensure_bucket(js, topology.instances_bucket, settings)
    bucket_stream = (await js.stream_info(kv_stream(topology.instances_bucket))).config
    expiring = bool(bucket_stream.allow_msg_ttl) or await allow_msg_ttl(
        js, bucket_stream, "finished instances will be kept for ever"
    )
    return Provisioned(
        instances=instances,
        native_timers=native_timers,
        subjects=subjects,
        instances_expire=expiring,
        index=await ensure_index_stream(js, topology, settings),
    )


async def ensure_index_stream(
    js: JetStreamContext, topology: Topology, settings: StreamSettings
) -> bool:
    """The index stream (:mod:`saga.index`): one message per subject, direct gets, per-message
    TTLs. False (with a warning) when it cannot be made: the engine runs without an index and
    listings read every instance."""
    try:
        have = await ensure_stream(
            js,
            StreamConfig(
                name=topology.index_stream,
                subjects=[f"{INDEX_PREFIX}.>", f"{SEARCH_PREFIX}.>"],
                retention=RetentionPolicy.LIMITS,
                max_msgs_per_subject=1,
                allow_direct=True,
                allow_msg_ttl=True,
                num_replicas=settings.replicas,
                storage=settings.storage,
            ),
        )
    except (ProvisioningError, NatsError) as exc:
        log.warning("no index stream %s (%s): listings will scan", topology.index_stream, exc)
        return False
    return bool(have.allow_msg_ttl) or await allow_msg_ttl(
        js, have, "finished instances' index entries will be kept for ever"
    )


async def ensure_bucket(
    js: JetStreamContext, bucket: str, settings: StreamSettings, ttl: float | None = None
) -> KeyValue:
    """The bucket, created (history 1, direct gets) when missing; ``ttl``: its keys expire
    that many seconds after their last write."""
    try:
        return await js.key_value(bucket)
    except Exception:  # nats-py raises BucketNotFoundError or NotFoundError by version
        pass
    return await js.create_key_value(
        KeyValueConfig(
            bucket=bucket,
            history=1,
            storage=settings.storage,
            replicas=settings.replicas,
            direct=True,
            ttl=ttl,
        )
    )


async def provision_partitions(
    nc: Client,
    topology: Topology,
    settings: StreamSettings,
    partitions: int,
    pin_timeout: float,
) -> None:
    """The work stream of routed events and one pinned consumer per partition.

    A work-queue stream: a routed event is removed once its owner acks it, so the
    stream holds only what is in flight.
    """
    js = nc.jetstream()
    await ensure_stream(
        js,
        StreamConfig(
            name=topology.work_stream,
            subjects=[f"{WORK_PREFIX}.>"],
            retention=RetentionPolicy.WORK_QUEUE,
            max_age=settings.events_max_age,
            num_replicas=settings.replicas,
            storage=settings.storage,
            duplicate_window=settings.duplicate_window,
        ),
    )
    for partition in range(partitions):
        await ensure_pinned_consumer(
            nc,
            topology.work_stream,
            ConsumerConfig(
                durable_name=topology.partition_consumer(partition),
                deliver_policy=DeliverPolicy.ALL,
                ack_policy=AckPolicy.EXPLICIT,
                backoff=list(settings.ack_wait_backoff),
                max_deliver=settings.max_deliver,
                max_ack_pending=settings.max_ack_pending,
                filter_subject=f"{WORK_PREFIX}.{partition}.>",
                num_replicas=settings.replicas if settings.replicas > 1 else None,
            ),
            pin_timeout,
        )
