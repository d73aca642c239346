"""Pull consumers spoken raw: one ``CONSUMER.MSG.NEXT`` request per batch, one inbox.

nats-py's ``PullSubscription.fetch`` waits for each message of a batch with its own timed
``next_msg`` (a task and a timer per message) and may send two requests per fetch. Here
the inbox's callback collects the batch and one future per fetch says when the pull is
over: the batch is full, or the server ended it (404 no messages, 408 expired, 409, 423).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from saga import jsonwire
from saga.nats.wire import read_cheaply
from saga.protocol import HEADER_PIN_ID, JS_API_PREFIX, PIN_GROUP

STATUS = "Status"
"""The header nats-py puts a status line's code in (``NATS/1.0 404``)."""
END_OF_PULL = frozenset({"404", "408", "409", "423"})
"""No messages, request expired, request conflict, pin id mismatch: the pull is over."""
PIN_MISMATCH = "423"
GRACE = 2.0
"""Seconds beyond the request's expiry before a fetch stops waiting for the server's end."""


class RawPull:
    """Fetch batches from a durable pull consumer (``pinned``: of its priority group,
    see :mod:`saga.nats.pinned`; while pinned to someone else, fetches return [])."""

    def __init__(self, nc: Client, stream: str, consumer: str, pinned: bool = False) -> None:
        self.nc = nc
        self.stream = stream
        self.consumer = consumer
        self.pinned = pinned
        self.pin: str | None = None
        self._next = f"{JS_API_PREFIX}CONSUMER.MSG.NEXT.{stream}.{consumer}"
        self._sub: Subscription | None = None
        self._got: list[Msg] = []
        self._wanted = 0
        self._over: asyncio.Future[None] | None = None

    async def fetch(self, batch: int, wait: float) -> list[Msg]:
        """Up to ``batch`` messages (more if a late answer to an earlier pull is there too),
        waiting at most about ``wait`` seconds for the first."""
        if self._sub is None:
            read_cheaply(self.nc)  # the deliveries' lines and headers (saga.nats.wire)
            self._sub = await self.nc.subscribe(self.nc.new_inbox(), cb=self._received)
        if not self._got:
            # no_wait with expires: wait for the first message, then end the pull with what
            # is there (without no_wait the server holds the pull open until the batch is full)
            request: dict[str, Any] = {"batch": batch, "expires": int(wait * 1e9), "no_wait": True}
            if self.pinned:
                request["group"] = PIN_GROUP
                if self.pin is not None:
                    request["id"] = self.pin
            over = asyncio.get_running_loop().create_future()
            self._wanted, self._over = batch, over
            await self.nc.publish(self._next, jsonwire.dumps(request), reply=self._sub.subject)
            try:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(over, wait + GRACE)
            finally:
                self._over = None
        got, self._got = self._got, []
        return got

    async def _received(self, msg: Msg) -> None:
        headers = msg.headers
        if headers is not None:
            status = headers.get(STATUS)
            if status is not None and not msg.data:
                if status == PIN_MISMATCH:
                    self.pin = None  # someone else holds the partition now
                if status in END_OF_PULL:
                    self._end()
                return  # heartbeats and other control messages
            if self.pinned and (pin := headers.get(HEADER_PIN_ID)) is not None:
                self.pin = pin
        self._got.append(msg)
        if len(self._got) >= self._wanted:
            self._end()

    def _end(self) -> None:
        over = self._over
        if over is not None and not over.done():
            over.set_result(None)

    async def close(self) -> None:
        if self._sub is not None:
            sub, self._sub = self._sub, None
            await sub.unsubscribe()
