"""Settings of one engine process."""

from __future__ import annotations

from dataclasses import dataclass, field

from saga.nats.provision import StreamSettings
from saga.nats.topology import Topology


@dataclass(frozen=True)
class EngineSettings:
    topology: Topology = field(default_factory=Topology)
    streams: StreamSettings = field(default_factory=StreamSettings)
    fetch_batch: int = 256
    """Messages pulled per fetch; they are processed concurrently (one at a time per instance)."""
    fetch_wait: float = 1.0
    """Seconds a fetch waits for messages before it loops (bounds shutdown latency)."""
    cache_size: int = 10_000
    """Instance records kept in memory with their revision (saves a read per event)."""
    max_conflicts: int = 8
    """Revision conflicts tolerated for one message before it is retried later."""
    retry_delay: float = 1.0
    """Seconds before a message that failed for a transient reason is redelivered."""
    finished_ttl: float = 7 * 24 * 3600.0
    """Seconds a completed or compensated instance stays in the bucket after its last write
    (as long as the events that made it); 0 keeps it for ever. Parked instances never expire."""
    partitions: int = 0
    """Partitioned mode when > 0: instances are dealt into this many partitions, each owned by
    one replica at a time (see docs/operations.md). 0: every replica takes any event."""
    heartbeat: float = 1.0
    """Seconds between a replica's heartbeats, which is also how often it rebalances."""
    member_ttl: float = 5.0
    """Seconds after its last heartbeat that a silent replica counts as gone."""
    pin_timeout: float = 5.0
    """Seconds a partition stays pinned to a replica that stopped pulling (a crash)."""
    timer_sweep: float = 5.0
    """Seconds between removals of handled fired-timer messages (one purge each)."""
    admission_ack_wait: float = 30.0
    """Seconds a limited saga's held trigger stays unacked without news before the server
    hands it to another replica (its holder keeps it in progress meanwhile): how long the
    slots of a crashed replica's instances take to be taken up again."""
    admission_wait: float = 0.1
    """Seconds an admission pull waits for a slot or a trigger: how soon a freed slot
    admits the next trigger (an idle limited saga costs this many pulls per second)."""
    admin_token: str | None = field(default=None, repr=False)
    """Required (``Authorization: Bearer``) on operator actions over NATS when set: the
    same token as the admin HTTP API's ``--admin-token``."""
