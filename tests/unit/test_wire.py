"""saga.nats.wire writes what nats-py's Client.publish writes, through the same private
attributes: these tests run nats-py's own publish beside it and fail if either changes."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Mapping

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nats import errors
from nats.aio.client import Client

from saga.nats.wire import Wire, publish_empty

REPLY = "_INBOX.abc.7"


async def _client(status: int = Client.CONNECTED, queued: bool = True) -> Client:
    """A client in ``status`` as connect() leaves it, without a socket: a flush request
    already queued (the flusher busy) unless ``queued`` is False."""
    nc = Client()
    nc._status = status
    nc._flush_queue = asyncio.Queue()
    if queued:
        nc._flush_queue.put_nowait(asyncio.get_running_loop().create_future())
    return nc


async def _written(
    publish: Awaitable[None] | None, nc: Client
) -> tuple[list[bytes], int, dict[str, int]]:
    if publish is not None:
        await publish
    return list(nc._pending), nc._pending_data_size, dict(nc.stats)


async def _both(
    subject: str, payload: bytes, headers: Mapping[str, str] | None
) -> tuple[object, object]:
    """(nats-py's result, Wire's result): what each wrote, or the error's type."""
    results: list[object] = []
    for ours in (False, True):
        nc = await _client()
        try:
            if ours:
                sent = Wire(nc).publish(subject, REPLY, payload, headers)
            else:
                sent = nc.publish(subject, payload, REPLY, None if headers is None else {**headers})
            results.append(await _written(sent, nc))
        except Exception as exc:
            results.append(type(exc))
    return results[0], results[1]


def test_the_private_attributes_it_uses_are_still_there() -> None:
    nc = Client()
    assert isinstance(Client.CONNECTED, int)
    assert nc._status != Client.CONNECTED
    assert nc._pending == []
    assert nc._pending_data_size == 0
    assert isinstance(nc._max_pending_size, int)
    assert isinstance(nc._max_payload, int)
    assert nc._flush_queue is None  # set by connect()
    assert asyncio.iscoroutinefunction(nc._flush_pending)
    assert nc.stats["out_msgs"] == 0
    assert nc.stats["out_bytes"] == 0


@pytest.mark.parametrize(
    ("subject", "payload", "headers"),
    [
        ("s.a", b"x" * 300, {"Saga-Id": "1", "Nats-Msg-Id": "order:1:status:done:3"}),
        ("s.a", b"", {"Nats-Expected-Last-Subject-Sequence": "0"}),
        ("s.a", b"plain", None),
        ("s.a", b"", {}),
        ("s.é", b"x", {"K": "vålue"}),  # UTF-8 in the subject and a value
        ("s.a", b"x", {" Padded ": "  spaced  ", "Multi": "a\r\nb\nc", "": "dropped"}),
        ("s.a", b"x", {"  ": "a key of blanks is skipped"}),
        ("s.a", b"x", {"Bad Key": "v"}),
        ("s.a", b"x", {"Bad:Key": "v"}),
        ("s a", b"x", None),
        ("", b"x", {"K": "v"}),
        ("s.\r\nPUB x", b"x", {"K": "v"}),
        ("s.a", b"x" * (1024 * 1024 + 1), {"K": "v"}),  # past max_payload
    ],
)
async def test_writes_or_refuses_what_nats_py_does(
    subject: str, payload: bytes, headers: dict[str, str] | None
) -> None:
    theirs, ours = await _both(subject, payload, headers)
    assert ours == theirs


_TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)


@settings(max_examples=300, deadline=None)
@given(
    subject=st.one_of(_TEXT, st.from_regex(r"[a-z]{1,5}(\.[a-z0-9]{1,5}){0,3}", fullmatch=True)),
    headers=st.one_of(
        st.none(),
        st.dictionaries(
            st.one_of(_TEXT, st.sampled_from(["Nats-Msg-Id", "Saga-Id", "traceparent"])),
            _TEXT,
            max_size=5,
        ),
    ),
    payload=st.binary(max_size=40),
)
def test_any_subject_and_headers_give_the_same_bytes_or_error(
    subject: str, headers: dict[str, str] | None, payload: bytes
) -> None:
    theirs, ours = asyncio.run(_both(subject, payload, headers))
    assert ours == theirs


async def test_a_second_use_of_a_key_writes_it_as_the_first() -> None:
    nc = await _client()
    wire = Wire(nc)
    for _ in range(2):
        assert wire.publish("s.a", REPLY, b"x", {" K ": "v"}) is None
    assert (
        nc._pending[0]
        == nc._pending[1]
        == b"HPUB s.a _INBOX.abc.7 18 19\r\nNATS/1.0\r\nK: v\r\n\r\nx\r\n"
    )


async def test_an_idle_flusher_is_kicked_as_nats_py_does() -> None:
    nc = await _client(queued=False)
    nc._flusher_task = asyncio.get_running_loop().create_future()  # a flusher, waiting
    flush = Wire(nc).publish("s.a", REPLY, b"x", None)
    assert flush is not None
    await flush
    assert nc._flush_queue is not None
    assert nc._flush_queue.qsize() == 1
    assert Wire(nc).publish("s.a", REPLY, b"x", None) is None  # it has not run yet


async def test_a_reconnecting_client_buffers_through_nats_py() -> None:
    nc = await _client(status=Client.RECONNECTING)
    nc._max_pending_size = 100
    wire = Wire(nc)
    sent = wire.publish("s.a", REPLY, b"x", {"K": "v"})
    assert sent is not None
    await sent
    assert nc._pending == [b"HPUB s.a _INBOX.abc.7 18 19\r\nNATS/1.0\r\nK: v\r\n\r\nx\r\n"]
    with pytest.raises(errors.OutboundBufferLimitError):
        await wire.publish("s.a", REPLY, b"y" * 100, None) or asyncio.sleep(0)


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (Client.CLOSED, errors.ConnectionClosedError),
        (Client.DRAINING_PUBS, errors.ConnectionDrainingError),
    ],
)
async def test_a_closed_or_draining_client_refuses_as_nats_py_does(
    status: int, error: type[Exception]
) -> None:
    nc = await _client(status=status)
    with pytest.raises(error):
        await Wire(nc).publish("s.a", REPLY, b"x", None) or asyncio.sleep(0)


ACKS = ["$JS.ACK.S.c.1.2.3.4.0", "$JS.ACK.S.c.1.3.4.5.0", "$JS.ACK.S.c.1.4.5.6.0"]


async def test_empty_publishes_write_the_bytes_of_nats_pys_one_by_one() -> None:
    theirs = await _client()
    for subject in ACKS:
        await theirs.publish(subject)
    ours = await _client()
    await publish_empty(ours, ACKS)
    assert b"".join(ours._pending) == b"".join(theirs._pending)
    assert ours._pending_data_size == theirs._pending_data_size
    assert ours.stats == theirs.stats
    assert len(ours._pending) == 1  # one command for the batch


@pytest.mark.parametrize("bad", ["", "a b", "a\r\nPUB x 0"])
async def test_a_bad_subject_among_empty_publishes_sends_none(bad: str) -> None:
    nc = await _client()
    with pytest.raises(errors.BadSubjectError):
        await publish_empty(nc, [ACKS[0], bad])
    assert nc._pending == []


async def test_empty_publishes_on_a_closed_client_refuse_as_nats_py_does() -> None:
    nc = await _client(status=Client.CLOSED)
    with pytest.raises(errors.ConnectionClosedError):
        await publish_empty(nc, ACKS)
