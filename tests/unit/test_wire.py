"""saga.nats.wire writes what nats-py's Client.publish writes, and reads what its parser
reads, through the same private attributes: these tests run nats-py's own publish and parse
beside it and fail if either changes."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Mapping

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nats import errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.protocol import parser as nats_parser
from nats.protocol.parser import Parser

from saga.nats import wire
from saga.nats.wire import Wire, publish_empty, read_cheaply

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


# -- the read path: nats-py's parser and header reader beside saga.nats.wire's


def test_the_private_attributes_the_read_path_uses_are_still_there() -> None:
    nc = Client()
    parser = nc._ps
    assert type(parser) is Parser
    assert parser.nc is nc
    assert parser.buf == bytearray()
    assert parser.state == nats_parser.AWAITING_CONTROL_LINE != nats_parser.AWAITING_MSG_PAYLOAD
    assert (parser.needed, parser.header_needed, parser.msg_arg) == (0, 0, {})
    assert asyncio.iscoroutinefunction(Parser.parse)
    assert nc._subs == {}
    assert nc.stats["in_msgs"] == nc.stats["in_bytes"] == 0
    code = Client._process_msg.__code__
    assert code.co_varnames[1:6] == ("sid", "subject", "reply", "data", "headers")
    assert isinstance(vars(Client)["_parse_header_lines"], staticmethod)
    sub = Subscription(nc, 7, "s", future=asyncio.Future(loop=asyncio.new_event_loop()))
    assert (sub._id, sub._max_msgs, sub._received, sub._jsi) == (7, 0, 0, None)
    assert sub._future is not None


class _Recorder:
    """What a parser hands its client: every call, in order (a stand-in for ``Client``
    whose ``_process_msg`` nats-py's parser and ``_Parser`` both call)."""

    def __init__(self) -> None:
        self.calls: list[tuple[object, ...]] = []
        self._subs: dict[int, object] = {}

    async def _process_msg(self, *args: object) -> None:
        self.calls.append(("msg", *args))

    async def _process_ping(self) -> None:
        self.calls.append(("ping",))

    async def _process_pong(self) -> None:
        self.calls.append(("pong",))

    async def _process_info(self, info: object) -> None:
        self.calls.append(("info", info))

    async def _process_err(self, err: str) -> None:
        self.calls.append(("err", err))


async def _parsed(cls: type[Parser], chunks: list[bytes]) -> tuple[object, ...]:
    """Every call ``cls`` made for ``chunks``, its state after, or the error it raised."""
    recorder = _Recorder()
    parser = cls(recorder)
    try:
        for chunk in chunks:
            await parser.parse(chunk)
    except Exception as exc:
        return ("raised", type(exc), recorder.calls)
    return (recorder.calls, bytes(parser.buf), parser.state)


def _msg(subject: bytes, sid: int, reply: bytes, payload: bytes) -> bytes:
    middle = b" " + reply if reply else b""
    return b"MSG %s %d%s %d\r\n%s\r\n" % (subject, sid, middle, len(payload), payload)


def _hmsg(subject: bytes, sid: int, reply: bytes, headers: bytes, payload: bytes) -> bytes:
    middle = b" " + reply if reply else b""
    size = len(headers)
    return b"HMSG %s %d%s %d %d\r\n%s%s\r\n" % (
        subject,
        sid,
        middle,
        size,
        size + len(payload),
        headers,
        payload,
    )


_ACK = b'{"stream":"SAGA_EVENTS","seq":42}'
_HEADERS = b"NATS/1.0\r\nSaga-Id: 1\r\ntraceparent: 00-ab-cd-01\r\n\r\n"
_LINES = [
    _msg(b"_INBOX.a.1", 1, b"", _ACK),
    _msg(b"s.a", 22, b"$JS.ACK.S.C.1.2.3.4.0", b"payload"),
    _msg(b"s.empty", 3, b"", b""),
    _msg(b"s.crlf", 3, b"", b"a\r\nMSG x 1 2\r\nb"),  # protocol text inside a payload
    _hmsg(b"s.h", 4, b"r.1", _HEADERS, b"{}"),
    _hmsg(b"s.h", 4, b"", _HEADERS, b""),
    _hmsg(b"_INBOX.a.2", 1, b"", b"NATS/1.0 503\r\n\r\n", b""),
    _hmsg(b"s.zero", 5, b"", b"", b"body"),  # a header size of 0
    b"PING\r\n",
    b"PONG\r\n",
    b"+OK\r\n",
    b'INFO {"server_id":"x","max_payload":1048576}\r\n',
    b"-ERR 'Stale Connection'\r\n",
    b"MSG  s.two.spaces 1 2\r\nab\r\n",
    b"MSG s.tab\t1 2\r\nab\r\n",
    b"MSG s.t 1 2 \r\nab\r\n",
    b"MSG s.lead 007 2\r\nab\r\n",
]
_BAD = [
    b"MSG s.x one 2\r\nab\r\n",  # a sid that is not a number
    b"MSG s.x 1 +2\r\nab\r\n",
    b"MSG s.x\r\n",
    b"MSG s.tab\tq 1 2\r\nab\r\n",  # a tab: nats-py reads a sid "q" here
    b"HMSG s.x 1 2\r\nab\r\n",
    b"BOGUS\r\n",
]


def _split(stream: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({cut % (len(stream) + 1) for cut in cuts})
    return [stream[a:b] for a, b in zip([0, *points], [*points, len(stream)], strict=True)]


@given(
    st.lists(st.sampled_from(_LINES), max_size=12),
    st.lists(st.sampled_from(_BAD), max_size=1),
    st.lists(st.integers(min_value=0), max_size=8),
)
@settings(max_examples=300, deadline=None)
def test_the_parser_hands_on_what_nats_pys_does_however_the_reads_split(
    lines: list[bytes], bad: list[bytes], cuts: list[int]
) -> None:
    stream = b"".join(lines + bad)
    chunks = _split(stream, cuts)

    async def both() -> tuple[object, object]:
        return await _parsed(Parser, chunks), await _parsed(wire._Parser, chunks)

    theirs, ours = asyncio.run(both())
    assert ours == theirs


@pytest.mark.parametrize("line", _LINES + _BAD)
async def test_each_kind_of_line_whole_or_byte_by_byte(line: bytes) -> None:
    for chunks in ([line + line], [bytes([b]) for b in line + line]):
        assert await _parsed(wire._Parser, chunks) == await _parsed(Parser, chunks)


async def _fed(cheap: bool, subscription: str, stream: bytes) -> tuple[Client, list[object]]:
    """A client (no socket) subscribed with sid 1 as ``subscription`` says, fed ``stream``
    in 7-byte reads; what its handlers got."""
    nc = Client()
    seen: list[object] = []

    def handler(msg: Msg) -> None:
        seen.append(("msg", msg.subject, msg.data, msg.headers))

    def raw(subject: bytes, data: bytes) -> None:
        if data == b"boom":
            raise ValueError("a raw handler failed")
        seen.append(("raw", subject, data))

    future = wire._Inline(handler, raw if subscription.startswith("raw") else None)
    max_msgs = 100 if subscription == "raw, max_msgs" else 0
    nc._subs[1] = Subscription(nc, 1, "_INBOX.a.*", future=future, max_msgs=max_msgs)
    if cheap:
        read_cheaply(nc)
    for start in range(0, len(stream), 7):
        await nc._ps.parse(stream[start : start + 7])
    return nc, seen


_ACKS = b"".join(
    [
        _msg(b"_INBOX.a.1", 1, b"", _ACK),
        _hmsg(b"_INBOX.a.2", 1, b"", b"NATS/1.0 503\r\n\r\n", b""),
        _msg(b"_INBOX.a.3", 1, b"", b"boom"),
        _msg(b"_INBOX.a.4", 1, b"", _ACK),
        _msg(b"_INBOX.gone.5", 9, b"", _ACK),  # no such subscription
    ]
)


async def test_headerless_messages_of_a_raw_subscription_skip_the_msg(
    caplog: pytest.LogCaptureFixture,
) -> None:
    nc, seen = await _fed(True, "raw", _ACKS)
    assert seen == [
        ("raw", b"_INBOX.a.1", _ACK),
        ("msg", "_INBOX.a.2", b"", {"Status": "503"}),
        ("raw", b"_INBOX.a.4", _ACK),
    ]
    assert "a raw handler failed" in caplog.text  # logged; the next message still came
    plain, _ = await _fed(False, "raw", _ACKS)  # nats-py's own parser: the same counts
    assert nc.stats == plain.stats
    assert nc._subs[1]._received == plain._subs[1]._received == 4


@pytest.mark.parametrize("subscription", ["handler only", "raw, max_msgs"])
async def test_other_subscriptions_get_what_nats_py_gives_them(subscription: str) -> None:
    nc, seen = await _fed(True, subscription, _ACKS)
    plain, plain_seen = await _fed(False, subscription, _ACKS)
    assert seen == plain_seen
    assert seen[0] == ("msg", "_INBOX.a.1", _ACK, None)
    assert nc.stats == plain.stats


async def test_read_cheaply_keeps_the_parser_object_and_is_idempotent() -> None:
    nc = Client()
    parser = nc._ps
    await parser.parse(b"MSG s 1 5\r\nab")  # a message half read
    read_cheaply(nc)
    read_cheaply(nc)
    assert nc._ps is parser
    assert type(parser) is wire._Parser
    assert parser.state == nats_parser.AWAITING_MSG_PAYLOAD  # carries on where it was
    reader = nc._parse_header_lines
    read_cheaply(nc)
    assert nc._parse_header_lines is reader


async def test_a_parser_of_another_class_is_left_alone() -> None:
    class Other(Parser):
        pass

    nc = Client()
    nc._ps = Other(nc)
    read_cheaply(nc)
    assert type(nc._ps) is Other


_HEADER_LINES = st.lists(
    st.one_of(
        st.sampled_from(
            [
                b"Saga-Id: 1",
                b"traceparent:00-a",
                b"Bad Name: x",
                b" Padded :  v ",
                b": e",
                b"\xc3\xa9: y",
                b"v: \xff\xfe",
                b"no colon",
                b"",
                b"K:\tv",
                b"Saga-Id: 2",
            ]
        ),
        st.binary(max_size=12).filter(lambda line: b"\r\n" not in line),
    ),
    max_size=8,
)


@given(st.lists(_HEADER_LINES, min_size=1, max_size=3))
@settings(max_examples=300, deadline=None)
def test_headers_read_as_nats_py_reads_them_first_time_and_again(
    blocks: list[list[bytes]],
) -> None:
    reader = wire._HeaderLines()
    for lines in blocks + blocks:  # each block twice: the second from the kept names
        raw = b"\r\n".join(lines) + b"\r\n\r\n"
        assert reader(raw) == Client._parse_header_lines(raw)


def test_the_header_names_kept_are_bounded() -> None:
    reader = wire._HeaderLines()
    for n in range(wire._KEYS_KEPT + 5):
        assert reader(b"K%d: v\r\n\r\n" % n) == {f"K{n}": "v"}
    assert len(reader._names) <= wire._KEYS_KEPT
