"""Pinned pull consumers: the server hands a consumer's messages to one puller at a time.

JetStream consumer priority groups with ``priority_policy: pinned_client`` (server 2.11+).
nats-py 2.16 does not expose them, so this module speaks the ``$JS.API`` JSON directly.
The first pull of the group gets a ``Nats-Pin-Id``; the server then delivers only to
pulls that carry it. Another puller takes over when the pinned one unpins (a clean
handover) or stops pulling for ``priority_timeout`` (a crash). A pull with a stale pin
gets status 423.
"""

from __future__ import annotations

import json
from typing import Any

from nats.aio.client import Client
from nats.js.api import ConsumerConfig

from saga import jsonwire
from saga.errors import ProvisioningError
from saga.nats.pull import RawPull
from saga.protocol import JS_API_PREFIX, PIN_GROUP


async def _api(nc: Client, subject: str, body: dict[str, Any], timeout: float = 5.0) -> Any:
    reply = await nc.request(JS_API_PREFIX + subject, jsonwire.dumps(body), timeout=timeout)
    answer = json.loads(reply.data)
    error = answer.get("error")
    if error:
        raise ProvisioningError(f"{subject}: {error.get('description', error)}")
    return answer


async def ensure_pinned_consumer(
    nc: Client, stream: str, config: ConsumerConfig, priority_timeout: float
) -> None:
    """Create (or update) a durable consumer whose messages go to one pinned puller."""
    assert config.durable_name is not None
    body = config.as_dict()
    body.update(
        priority_groups=[PIN_GROUP],
        priority_policy="pinned_client",
        priority_timeout=int(priority_timeout * 1e9),
    )
    await _api(
        nc,
        f"CONSUMER.CREATE.{stream}.{config.durable_name}",
        {"stream_name": stream, "config": body},
    )


async def unpin(nc: Client, stream: str, consumer: str) -> None:
    """Release the pin now, so the next puller takes over without waiting for the timeout."""
    await _api(nc, f"CONSUMER.UNPIN.{stream}.{consumer}", {"group": PIN_GROUP})


class PinnedPull(RawPull):
    """Fetch batches from a pinned consumer; while pinned to someone else, fetches return []."""

    def __init__(self, nc: Client, stream: str, consumer: str) -> None:
        super().__init__(nc, stream, consumer, pinned=True)
