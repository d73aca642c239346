"""The delivery read off an ack subject matches nats-py's own parse, in both subject forms."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import cast

import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import NotJSMessageError

from saga.nats.delivery import Delivery, delivery_of

V1 = "$JS.ACK.SAGA_EVENTS.saga-engine.3.1042.77.1764729600000000000.12"
V2 = "$JS.ACK.hub.ACCHASH.SAGA_EVENTS.saga-engine.3.1042.77.1764729600000000000.12.rnd"


def delivered(reply: str | None, **kwargs: object) -> Msg:
    return Msg(cast(Client, None), subject="saga.cmd.x", reply=reply or "", **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("reply", [V1, V2])
def test_an_ack_subject_gives_stream_sequence_and_delivery_count(reply: str) -> None:
    msg = delivered(reply)
    meta = msg.metadata
    expected = Delivery(meta.stream, meta.sequence.stream, meta.num_delivered)
    assert delivery_of(msg) == expected == Delivery("SAGA_EVENTS", 1042, 3)


def test_a_message_built_in_memory_gives_its_metadata() -> None:
    meta = Msg.Metadata(
        sequence=Msg.Metadata.SequencePair(consumer=1, stream=9),
        num_pending=0,
        num_delivered=2,
        timestamp=datetime.now(UTC),
        stream="S",
        consumer="c",
    )
    assert delivery_of(delivered(None, _metadata=meta)) == Delivery("S", 9, 2)


def test_a_core_message_is_not_a_delivery() -> None:
    with pytest.raises(NotJSMessageError):
        delivery_of(delivered("_INBOX.abc"))
