"""Pipelined JetStream publishes: send now, collect the ack later.

This is what nats-py's ``js.publish_async`` does, without its two problems (nats-py 2.16):

- an ack that is an API error never resolves its future: ``APIError.from_error`` raises
  inside the reply callback (nats-io/nats.py#985), so a stale revision (10071) or a wrong
  expected stream would hang the caller instead of failing;
- its cost per publish: a semaphore taken through ``asyncio.wait_for``, a token from
  ``os.urandom`` and a ``PubAck`` parsed field by field. With 64 transitions of three
  publishes in flight, 29.0 against 19.2 µs of client CPU per publish (medians of 5 runs
  of 20,000 on the development machine).

Several publishes whose acks are awaited together (a transition's commands, timers and
status event) can share one :class:`AckGroup`: one future for all of them, instead of a
future per publish and an ``asyncio.gather`` over them.

Publishes go through :mod:`saga.nats.wire` (a cheaper ``Client.publish``) and the acks come
back inline, from nats-py's read loop: no queue, task or coroutine per ack (20 against 29 µs
of client CPU per publish and ack: ``bench/publish_alone.py``); an ack without headers (all
but a 503) as its subject and payload, straight from the parser to
:meth:`Acks._on_plain_ack`, without nats-py's ``Msg`` (about 2 µs less per ack).

Every publish gets a deadline without a timer of its own: the pending acks are kept in
send order, and one sweep a second fails those older than ``timeout`` with
``nats.errors.TimeoutError`` (the message may or may not be stored; callers retry, and
``Nats-Msg-Id`` or a revision check makes the retry safe).
"""

from __future__ import annotations

import asyncio
import time
import weakref
from dataclasses import dataclass
from typing import Any

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.errors import APIError, NoStreamResponseError

from saga import jsonwire
from saga.nats.wire import Wire, subscribe_inline

DEFAULT_TIMEOUT = 10.0
"""Seconds a publish may wait for its ack."""


@dataclass(frozen=True, slots=True)
class PubAck:
    """The stream's answer to a stored publish."""

    stream: str
    seq: int
    """The message's sequence in the stream (a KV key's new revision)."""
    duplicate: bool = False
    """The server already had a message with this ``Nats-Msg-Id``: nothing was stored."""

    @classmethod
    def from_response(cls, data: dict[str, Any]) -> PubAck:
        return cls(data["stream"], data["seq"], bool(data.get("duplicate", False)))


class AckGroup:
    """The acks of several publishes as one future: done when every ack came back, failed
    by the first error (an API error, no stream, a timeout). Publish with
    :meth:`Acks.send_in`, then await :meth:`wait`."""

    __slots__ = ("_closed", "_left", "future")

    def __init__(self) -> None:
        self.future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._left = 0
        self._closed = False

    def expect(self) -> None:
        """One more publish whose ack counts towards the group (:meth:`Acks.send_in`)."""
        self._left += 1

    def arrived(self, error: BaseException | None) -> None:
        """An ack came back (``error``: what it said went wrong, or its timeout)."""
        future = self.future
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
            return
        self._left -= 1
        if self._closed and self._left == 0:
            future.set_result(None)

    def __len__(self) -> int:
        """Acks still awaited."""
        return self._left

    def close(self) -> asyncio.Future[None]:
        """No more publishes: the future is done when every ack sent so far came back."""
        self._closed = True
        if self._left == 0 and not self.future.done():
            self.future.set_result(None)
        return self.future

    async def wait(self) -> None:
        """Until every ack sent so far came back; raises the first failure."""
        await self.close()


def _api_error(error: dict[str, Any]) -> APIError:
    """nats-py's error class for the code (``BadRequestError``, ``NotFoundError``…)."""
    try:
        APIError.from_error(error)  # raises the right subclass; never returns
    except APIError as exc:
        return exc
    return APIError(description=str(error))  # pragma: no cover


class Acks:
    """Publishes whose acks come back on one wildcard inbox subscription."""

    def __init__(self, nc: Client, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.nc = nc
        self.timeout = timeout
        self._prefix = ""
        self._waiting: dict[str, tuple[asyncio.Future[PubAck] | AckGroup, float]] = {}
        """Pending acks by reply token, oldest first (tokens count up)."""
        self._count = 0
        self._lock = asyncio.Lock()
        self._sweep: asyncio.TimerHandle | None = None
        self._wire = Wire(nc)

    async def send(
        self, subject: str, data: bytes, headers: dict[str, str] | None = None
    ) -> asyncio.Future[PubAck]:
        """Publish now; returns the ack to await (it raises the server's error, if any)."""
        ack: asyncio.Future[PubAck] = asyncio.get_running_loop().create_future()
        await self._publish(ack, subject, data, headers)
        return ack

    async def send_in(
        self, group: AckGroup, subject: str, data: bytes, headers: dict[str, str] | None = None
    ) -> None:
        """Publish now; its ack counts towards ``group`` (see :class:`AckGroup`)."""
        await self._publish(group, subject, data, headers)
        group.expect()

    async def _publish(
        self,
        waiter: asyncio.Future[PubAck] | AckGroup,
        subject: str,
        data: bytes,
        headers: dict[str, str] | None,
    ) -> None:
        """Publish with a reply token of our inbox; ``waiter`` gets the ack (or the timeout)."""
        if not self._prefix:
            await self._subscribe()
        self._count += 1
        token = str(self._count)
        self._waiting[token] = (waiter, time.monotonic() + self.timeout)
        if self._sweep is None:
            self._sweep = asyncio.get_running_loop().call_later(self._interval(), self._expire)
        try:
            flush = self._wire.publish(subject, self._prefix + token, data, headers)
            if flush is not None:
                await flush
        except BaseException:
            self._waiting.pop(token, None)
            raise

    async def _subscribe(self) -> None:
        async with self._lock:
            if not self._prefix:
                prefix = self.nc.new_inbox() + "."
                await subscribe_inline(self.nc, prefix + "*", self._on_ack, self._on_plain_ack)
                self._prefix = prefix

    def _on_ack(self, msg: Msg) -> None:
        """An ack as nats-py's ``Msg`` (one with headers: a status such as 503)."""
        if msg.headers and msg.headers.get("Status") == "503":
            self._settle(msg.subject[len(self._prefix) :], NoStreamResponseError())
        else:
            self._settle(msg.subject[len(self._prefix) :], None, msg.data)

    def _on_plain_ack(self, subject: bytes, data: bytes) -> None:
        """An ack without headers, straight from the parser (``saga.nats.wire``)."""
        self._settle(subject[len(self._prefix) :].decode(), None, data)

    def _settle(self, token: str, failed: BaseException | None, data: bytes = b"") -> None:
        """The ack of ``token`` came back: ``failed`` (no stream), or the server's ``data``."""
        entry = self._waiting.pop(token, None)
        if entry is None:
            return
        ack = entry[0]
        if isinstance(ack, AckGroup):
            ack.arrived(failed if failed is not None else _failure(data))
            return
        if ack.done():
            return
        if failed is not None:
            ack.set_exception(failed)
            return
        try:
            response = jsonwire.loads(data)
            error = response.get("error")
            if error is not None:
                ack.set_exception(_api_error(error))
            else:
                ack.set_result(PubAck.from_response(response))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            ack.set_exception(exc)

    def _interval(self) -> float:
        return min(1.0, self.timeout / 4)

    def _expire(self) -> None:
        """Fail the acks past their deadline; come back while any is pending."""
        self._sweep = None
        now = time.monotonic()
        while self._waiting:
            token, (ack, deadline) = next(iter(self._waiting.items()))
            if deadline > now and not (isinstance(ack, asyncio.Future) and ack.done()):
                break
            del self._waiting[token]
            if isinstance(ack, AckGroup):
                ack.arrived(NatsTimeoutError())
            elif not ack.done():
                ack.set_exception(NatsTimeoutError())
        if self._waiting:
            loop = asyncio.get_running_loop()
            self._sweep = loop.call_later(self._interval(), self._expire)


def _failure(data: bytes) -> BaseException | None:
    """What an ack's payload says went wrong (None: stored, or a duplicate)."""
    if data.startswith(b'{"stream":') and b'"error"' not in data:
        return None  # the server's stored-message ack (its JSON is read only for a sequence)
    try:
        response = jsonwire.loads(data)
        error = response.get("error")
        if error is not None:
            return _api_error(error)
        PubAck.from_response(response)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        return exc
    return None


_SHARED: weakref.WeakKeyDictionary[Client, Acks] = weakref.WeakKeyDictionary()


def acks_for(nc: Client) -> Acks:
    """The connection's shared :class:`Acks` (one inbox subscription per connection)."""
    found = _SHARED.get(nc)
    if found is None:
        found = _SHARED[nc] = Acks(nc)
    return found
