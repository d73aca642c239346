"""Many empty publishes as one protocol write: a fetched batch's acks.

``Client.publish`` costs ~3 µs of Python per ack (a regex over the subject, four
coroutines, a ``PUB`` line built and encoded alone); a batch's acks are all known at once,
so their ``PUB`` lines are joined and handed to nats-py's writer in one call (~0.5 µs an
ack). This is the one place that uses nats-py's private writer (``_send_command``,
``_flush_pending``, ``_flush_queue``, nats-py 2.16); ``tests/unit/test_wire.py`` fails if
nats-py changes them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from nats.aio.client import Client
from nats.errors import BadSubjectError, ConnectionClosedError, ConnectionDrainingError

_UNSAFE = re.compile(r"[ \t\r\n]")
"""What ``Client.publish`` refuses in a subject (CRLF would inject protocol commands)."""


async def publish_empty(nc: Client, subjects: Sequence[str]) -> None:
    """An empty message to each of ``subjects``, in order, as ``Client.publish`` would send
    them one by one; raises as it would, before anything is sent."""
    if nc.is_closed:
        raise ConnectionClosedError
    if nc.is_draining_pubs:
        raise ConnectionDrainingError
    if not nc.is_connected:  # reconnecting: publish's own checks of the pending buffer
        for subject in subjects:
            await nc.publish(subject)
        return
    lines = []
    for subject in subjects:
        if not subject or _UNSAFE.search(subject):
            raise BadSubjectError
        lines.append(f"PUB {subject} 0\r\n\r\n")
    if not lines:
        return
    await nc._send_command("".join(lines).encode())
    nc.stats["out_msgs"] += len(lines)
    if nc._flush_queue is not None and nc._flush_queue.empty():
        await nc._flush_pending()
