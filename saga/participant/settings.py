"""How a participant consumes: one frozen settings object, validated once at start-up."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from saga.errors import ConfigError
from saga.nats.topology import Topology
from saga.protocol import EFFECTS_BUCKET

if TYPE_CHECKING:
    from saga.nats.provision import StreamSettings


def _default_stream() -> StreamSettings:
    """nats-py (``StreamSettings.storage``'s type) loads with the first settings object made,
    not with the SDK."""
    from saga.nats.provision import StreamSettings

    return StreamSettings()


@dataclass(frozen=True)
class ParticipantSettings:
    """Knobs of the consume loop; the defaults suit a service on a shared 2-core machine."""

    topology: Topology = field(default_factory=Topology)
    """Names of the engine's streams and buckets (must match the engine's)."""
    stream: StreamSettings = field(default_factory=_default_stream)
    """Ack backoff, ``max_deliver`` and replicas of the participant's consumer and buckets."""
    effects_bucket: str = EFFECTS_BUCKET
    """Bucket behind ``ctx.once``."""
    batch: int = 100
    """Messages asked for per fetch: batching is what makes a Python consumer fast."""
    max_inflight: int = 256
    """Messages handled concurrently; no fetch is made while this many are in flight."""
    fetch_timeout: float = 1.0
    """Seconds one fetch waits for messages; also the longest a stop waits for the loop."""
    publish_timeout: float = 5.0
    """Seconds to wait for the server's ack of a reply before the message is retried."""
    keepalive: float = 1.0
    """A message in flight this long gets an in-progress ack every ``keepalive`` seconds,
    so a slow handler is not redelivered to a second worker while it still runs."""
    wait_log_every: float = 5.0
    """While the engine's streams do not exist yet, log that we wait this often."""

    def __post_init__(self) -> None:
        problems = [
            f"{name} must be > 0 (got {value})"
            for name, value in (
                ("batch", self.batch),
                ("max_inflight", self.max_inflight),
                ("fetch_timeout", self.fetch_timeout),
                ("publish_timeout", self.publish_timeout),
                ("keepalive", self.keepalive),
                ("wait_log_every", self.wait_log_every),
            )
            if value <= 0
        ]
        if not self.stream.ack_wait_backoff:
            problems.append("stream.ack_wait_backoff must not be empty")
        elif 0 < self.stream.max_deliver <= len(self.stream.ack_wait_backoff):
            problems.append(
                "stream.max_deliver must exceed the number of ack_wait_backoff values "
                "(a server rule)"
            )
        if problems:
            raise ConfigError("invalid participant settings: " + "; ".join(problems))

    def redelivery_delay(self, delivered: int) -> float:
        """The nak delay after delivery number ``delivered`` failed (1-based)."""
        backoff = self.stream.ack_wait_backoff
        return backoff[min(delivered, len(backoff)) - 1]
