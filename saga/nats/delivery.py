"""What a consumed message's ack subject says about its delivery, parsed cheaply.

nats-py's ``Msg.metadata`` builds a datetime and three objects per message; the engine and
the participants only need the stream, the stream sequence and the delivery count, which
are tokens of the reply subject ``$JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.
<consumer seq>.<timestamp>.<pending>`` (or, with a domain and account hash, two more
tokens first).
"""

from __future__ import annotations

from typing import NamedTuple

from nats.aio.msg import Msg

from saga.protocol import JS_ACK_PREFIX

_V1_TOKENS = 9
"""``$JS.ACK`` + 7 tokens: the form without domain and account hash."""


class Delivery(NamedTuple):
    stream: str
    sequence: int
    """The message's sequence in its stream."""
    delivered: int
    """How many times the consumer has delivered it (1 on the first delivery)."""


def delivery_of(msg: Msg) -> Delivery:
    """The delivery of a message from a JetStream consumer (``NotJSMessageError`` if not one).

    A message built in memory without a reply (the participant testing kit) carries its
    metadata instead; that is read then."""
    found = delivery_in(msg.reply)
    if found is not None:
        return found
    meta = msg.metadata
    return Delivery(meta.stream, meta.sequence.stream, meta.num_delivered)


def delivery_in(reply: str | None) -> Delivery | None:
    """The delivery an ack subject names (None when it is not one): any earlier delivery's
    ack subject still acks the message, so a stored one says which message it was."""
    if reply and reply.startswith(JS_ACK_PREFIX):
        tokens = reply.split(".")
        at = 2 if len(tokens) == _V1_TOKENS else 4
        if len(tokens) > at + 3:
            return Delivery(tokens[at], int(tokens[at + 3]), int(tokens[at + 2]))
    return None
