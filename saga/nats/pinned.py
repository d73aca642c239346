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
import time
from typing import Any

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js.api import ConsumerConfig

from saga import jsonwire
from saga.errors import ProvisioningError
from saga.protocol import HEADER_PIN_ID, JS_API_PREFIX, PIN_GROUP

_END_OF_PULL = {"404", "408", "409", "423"}
"""No messages, request expired, request conflict, pin id mismatch: the pull is over."""


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


class PinnedPull:
    """Fetch batches from a pinned consumer; while pinned to someone else, fetches return []."""

    def __init__(self, nc: Client, stream: str, consumer: str) -> None:
        self.nc = nc
        self.stream = stream
        self.consumer = consumer
        self.pin: str | None = None
        self._next = f"{JS_API_PREFIX}CONSUMER.MSG.NEXT.{stream}.{consumer}"
        self._sub: Subscription | None = None

    async def fetch(self, batch: int, wait: float) -> list[Msg]:
        """Up to ``batch`` messages, waiting at most about ``wait`` seconds for the first."""
        if self._sub is None:
            self._sub = await self.nc.subscribe(self.nc.new_inbox())
        # no_wait with expires: wait for the first message, then end the pull with what is
        # there (without no_wait the server holds the pull open until the batch is full).
        request: dict[str, Any] = {
            "batch": batch,
            "expires": int(wait * 1e9),
            "no_wait": True,
            "group": PIN_GROUP,
        }
        if self.pin is not None:
            request["id"] = self.pin
        await self.nc.publish(self._next, jsonwire.dumps(request), reply=self._sub.subject)
        msgs: list[Msg] = []
        deadline = time.monotonic() + wait + 2.0  # the server's 408 normally ends the pull
        while len(msgs) < batch:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                msg = await self._sub.next_msg(timeout=left)
            except TimeoutError:
                break
            headers = msg.headers or {}
            status = headers.get("Status")
            if status is not None and not msg.data:
                if status == "423":
                    self.pin = None  # someone else holds the partition now
                if status in _END_OF_PULL:
                    break
                continue  # heartbeats and other control messages
            pin = headers.get(HEADER_PIN_ID)
            if pin is not None:
                self.pin = pin
            msgs.append(msg)
        return msgs

    async def close(self) -> None:
        if self._sub is not None:
            sub, self._sub = self._sub, None
            await sub.unsubscribe()
