"""Direct gets (``$JS.API.DIRECT.GET.<stream>``): read stored messages without a consumer.

nats-py 2.16 wraps only the one-message form. The server (2.11+) also answers a *batch*
(``next_by_subj`` + ``batch``: the next matching messages from a sequence, then an
end-of-batch status 204) and ``multi_last`` (the last message of each subject matching the
filters). Both stream back several messages on the reply inbox; this module collects them.
Any stream with ``allow_direct`` answers, from any of its replicas.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from nats.aio.client import Client
from nats.errors import TimeoutError as NatsTimeoutError

from saga.errors import StoreError
from saga.protocol import (
    HEADER_STORED_SEQUENCE,
    HEADER_STORED_SUBJECT,
    HEADER_STORED_TIME,
    JS_API_PREFIX,
)

DIRECT_GET = JS_API_PREFIX + "DIRECT.GET."
_END = {"204", "404"}
"""Statuses that end an answer: end of batch, nothing found."""


@dataclass(frozen=True, slots=True)
class DirectMsg:
    """One stored message as a direct get returns it."""

    subject: str
    sequence: int
    time: datetime
    """When the stream stored it."""
    data: bytes
    headers: dict[str, str]


def _parse(msg_headers: dict[str, str], data: bytes) -> DirectMsg:
    stamp = msg_headers.get(HEADER_STORED_TIME, "")
    return DirectMsg(
        msg_headers.get(HEADER_STORED_SUBJECT, ""),
        int(msg_headers.get(HEADER_STORED_SEQUENCE, "0")),
        _rfc3339(stamp),
        data,
        msg_headers,
    )


def _rfc3339(text: str) -> datetime:
    """The server's nanosecond RFC 3339 stamp, cut to what ``datetime`` holds."""
    head, _, rest = text.partition(".")
    fraction = "".join(c for c in rest if c.isdigit())[:6]
    return datetime.fromisoformat(f"{head}.{fraction or '0'}+00:00")


async def direct_get(
    nc: Client, stream: str, request: dict[str, Any], timeout: float = 5.0
) -> list[DirectMsg]:
    """Every message one direct-get request answers with (none when nothing matches).

    ``request`` is the server's JSON (``seq``, ``next_by_subj``, ``batch``, ``multi_last``,
    ``up_to_seq``…); a one-message request (no ``batch``/``multi_last``) ends at its message.
    """
    streaming = "batch" in request or "multi_last" in request
    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox)
    found: list[DirectMsg] = []
    try:
        await nc.publish(
            DIRECT_GET + stream, json.dumps(request, allow_nan=False).encode(), reply=inbox
        )
        while True:
            try:
                msg = await sub.next_msg(timeout)
            except NatsTimeoutError:
                raise StoreError(f"direct get on {stream} got no answer in {timeout}s") from None
            headers = dict(msg.headers or {})
            status = headers.get("Status")
            if status in _END:
                return found
            if status is not None:
                if status == "503":
                    raise StoreError(f"no stream {stream} answers direct gets")
                raise StoreError(
                    f"direct get on {stream}: {status} {headers.get('Description', '')}".strip()
                )
            found.append(_parse(headers, msg.data))
            if not streaming:
                return found
    finally:
        await sub.unsubscribe()
