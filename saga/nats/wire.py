"""Publishing with a reply subject, cheaper than nats-py's ``Client.publish``: the one module
that touches nats-py's private attributes (``tests/unit/test_wire.py`` fails if they change).

nats-py 2.16 spends about 9 µs of CPU on a publish with four headers: three coroutines
(``publish``, ``_send_publish``, ``_send_command``), a regular expression per subject and
per header key, the header block built in a ``bytearray`` key by key, the command line by an
f-string, and the command copied three times. :func:`publish` does the common case (a
connected client, a subject and headers nats-py accepts, a payload within the server's
limit) in one plain function: the command built in one piece, header keys checked once per
connection, and hands it to nats-py's pending buffer exactly as ``_send_command`` does, with
the same statistics. Everything else (a closed, draining or reconnecting client, a bad
subject or header, a payload too large) goes to ``Client.publish``, so buffering while
reconnecting, the errors and their types stay nats-py's own. :func:`publish_empty` does
the same for a fetched batch's acks: empty messages without reply, one command for all.

The read side, :func:`read_cheaply`: the connection's parser reads ``MSG``/``HMSG`` lines
without nats-py's regular expressions, hands a ``raw`` subscription's headerless messages
(the pub-acks) over without a ``Msg``, and header names are read once per connection;
everything else is nats-py's own (``tests/unit/test_wire.py`` runs both side by side).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence

from nats.aio import client as nats_client
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.errors import BadSubjectError
from nats.protocol.parser import AWAITING_CONTROL_LINE, AWAITING_MSG_PAYLOAD, Parser

log = logging.getLogger(__name__)

_CONNECTED = Client.CONNECTED
_SUBJECT_BAD = re.compile(r"[ \t\r\n]")
"""What nats-py's ``_validate_subject`` refuses in a published subject (and an empty one)."""
_HEADER_KEY = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
"""nats-py's ``_HEADER_KEY_RE``: an HTTP token."""
_NEWLINES = str.maketrans({"\r": " ", "\n": " "})
"""nats-py's ``_HEADER_VALUE_NEWLINES``: a value's inner line breaks become spaces."""
_KEYS_KEPT = 1024
"""Header keys remembered as valid, per connection (participants' keys are few too)."""


class Wire:
    """One connection's publish path (see the module's docstring)."""

    __slots__ = ("_keys", "nc")

    def __init__(self, nc: Client) -> None:
        self.nc = nc
        self._keys: dict[str, str] = {}
        """Header key as given -> ``"Key: "`` as nats-py writes it (stripped, checked)."""

    def publish(
        self, subject: str, reply: str, payload: bytes, headers: Mapping[str, str] | None
    ) -> Awaitable[None] | None:
        """Publish ``payload`` to ``subject`` with ``reply``; returns what to await (a flush
        nats-py asks for, or the whole publish when it is nats-py's), or None.

        ``reply`` must be a valid subject (the caller's own inbox: it is not checked again).
        """
        nc = self.nc
        if (
            nc._status != _CONNECTED
            or not subject
            or _SUBJECT_BAD.search(subject) is not None
            or len(payload) > nc._max_payload
        ):
            return nc.publish(subject, payload, reply, None if headers is None else dict(headers))
        if headers is None:
            line = f"PUB {subject} {reply} {len(payload)}\r\n"
            command = b"".join((line.encode(), payload, b"\r\n"))
        else:
            block = self._header_block(headers)
            if block is None:  # a key nats-py refuses: its error
                return nc.publish(subject, payload, reply, dict(headers))
            if block.isascii():
                size = len(block)
                line = f"HPUB {subject} {reply} {size} {size + len(payload)}\r\n{block}"
                command = b"".join((line.encode(), payload, b"\r\n"))
            else:
                encoded = block.encode()
                size = len(encoded)
                line = f"HPUB {subject} {reply} {size} {size + len(payload)}\r\n"
                command = b"".join((line.encode(), encoded, payload, b"\r\n"))
        return _pend(nc, command, 1, len(payload))

    def _header_block(self, headers: Mapping[str, str]) -> str | None:
        """``NATS/1.0`` and the headers as nats-py writes them; None if a key is refused."""
        keys = self._keys
        parts = ["NATS/1.0\r\n"]
        for key, value in headers.items():
            written = keys.get(key)
            if written is None:
                stripped = key.strip()
                if stripped and _HEADER_KEY.fullmatch(stripped) is None:
                    return None
                written = stripped + ": " if stripped else ""  # nats-py skips an empty key
                if len(keys) >= _KEYS_KEPT:
                    keys.clear()
                keys[key] = written
            if not written:
                continue
            value = value.strip()
            if "\r" in value or "\n" in value:
                value = value.translate(_NEWLINES)
            parts.append(written)
            parts.append(value)
            parts.append("\r\n")
        parts.append("\r\n")
        return "".join(parts)


async def publish_empty(nc: Client, subjects: Sequence[str]) -> None:
    """An empty message without reply to each of ``subjects``, in order, written as nats-py's
    ``publish`` writes them one by one but as one command (a fetched batch's acks: ~0.5
    against ~3 µs each); a bad subject raises ``BadSubjectError`` before anything is sent."""
    for subject in subjects:
        if not subject or _SUBJECT_BAD.search(subject) is not None:
            raise BadSubjectError
    if nc._status != _CONNECTED:  # closed, draining, reconnecting: nats-py's own checks
        for subject in subjects:
            await nc.publish(subject)
        return
    if subjects:
        command = "".join([f"PUB {subject}  0\r\n\r\n" for subject in subjects]).encode()
        flush = _pend(nc, command, len(subjects), 0)
        if flush is not None:
            await flush


def _pend(nc: Client, command: bytes, messages: int, size: int) -> Awaitable[None] | None:
    """``command`` (``messages`` messages, ``size`` payload bytes) into nats-py's pending
    buffer, as its ``_send_command`` does, then ``_send_publish``'s kick of the flusher;
    returns what to await, or None."""
    stats = nc.stats
    stats["out_msgs"] += messages
    stats["out_bytes"] += size
    nc._pending.append(command)
    nc._pending_data_size += len(command)
    if nc._max_pending_size > 0 and nc._pending_data_size > nc._max_pending_size:
        return _flush_now(nc)
    queue = nc._flush_queue
    if queue is not None and queue.empty():
        return nc._flush_pending()
    return None


async def _flush_now(nc: Client) -> None:
    """The buffer went past ``max_pending_size``: flush and wait for it, then kick the
    flusher if its queue is empty, as nats-py's ``_send_command`` and ``_send_publish`` do."""
    await nc._flush_pending(force_flush=True)
    queue = nc._flush_queue
    if queue is not None and queue.empty():
        await nc._flush_pending()


RawHandler = Callable[[bytes, bytes], None]
"""Called with a headerless message's subject and payload (see :func:`subscribe_inline`)."""


async def subscribe_inline(
    nc: Client, subject: str, handler: Callable[[Msg], None], raw: RawHandler | None = None
) -> Subscription:
    """Subscribe ``handler``, called in nats-py's read loop as each message is parsed.

    A callback subscription costs nats-py a queue put and get, a task switch and a coroutine
    per message; a subscription with a future (what nats-py's old-style request makes) has
    its message handed to the future's ``set_result`` at once: :class:`_Inline` is a future
    whose ``set_result`` calls ``handler``, for every message. With ``raw``, a message
    without headers skips nats-py's ``Msg`` too: the connection's parser becomes
    :class:`_Parser` (:func:`read_cheaply`), which hands its subject and payload, as bytes, to ``raw``; messages
    with headers (a status) still come to ``handler``. Neither may block or raise (what
    they raise is logged: the read loop goes on)."""
    if raw is not None:
        read_cheaply(nc)
    return await nc.subscribe(subject, future=_Inline(handler, raw))


class _Inline(asyncio.Future[Msg]):
    """Never done: each message given to it goes to the handler."""

    def __init__(self, handler: Callable[[Msg], None], raw: RawHandler | None = None) -> None:
        super().__init__()
        self._handler = handler
        self.raw = raw

    def set_result(self, result: Msg, /) -> None:
        try:
            self._handler(result)
        except Exception:
            log.exception("a message handler failed on %s", result.subject)


def read_cheaply(nc: Client) -> None:
    """Make the connection's parser a :class:`_Parser`: the same object, so its buffer and
    state (and a parse under way) carry on; nats-py only ever resets it, never replaces it.
    A parser of another class (someone else's) is left alone (a ``raw`` handler of
    :func:`subscribe_inline` is then never used). And have the connection read headers
    with :class:`_HeaderLines` (what nats-py's ``_parse_header_lines`` returns, for a
    quarter of its CPU), unless nats-py reads them with ``fast_mail_parser`` (installed),
    which it then keeps doing. Idempotent."""
    if type(nc._ps) is Parser:
        nc._ps.__class__ = _Parser
    if getattr(nats_client, "parse_email", None) is None and "_parse_header_lines" not in vars(nc):
        nc._parse_header_lines = _HeaderLines()  # type: ignore[method-assign]


class _HeaderLines:
    """nats-py's ``Client._parse_header_lines`` with each header name's reading kept.

    nats-py strips, decodes and checks every name of every message for white space (a
    generator over its characters): about three quarters of its CPU for a delivery's five
    headers. The names repeat (a handful per connection), so what a name's bytes read as
    (its key, or None: skipped) is kept, up to ``_KEYS_KEPT`` names (then forgotten and
    read again); the values are read as nats-py reads them."""

    __slots__ = ("_names",)

    def __init__(self) -> None:
        self._names: dict[bytes, str | None] = {}

    def __call__(self, raw: bytes) -> dict[str, str]:
        out: dict[str, str] = {}
        names = self._names
        for line in raw.split(b"\r\n"):
            if not line:
                continue
            name, sep, value = line.partition(b":")
            if not sep:
                continue
            try:
                key = names[name]
            except KeyError:
                key = _header_key(name)
                if len(names) >= _KEYS_KEPT:
                    names.clear()
                names[name] = key
            if key is not None:
                out[key] = value.strip().decode("utf-8", "replace")
        return out


def _header_key(name: bytes) -> str | None:
    """The key nats-py reads ``name`` as, or None where it skips the line."""
    try:
        key = name.strip().decode("ascii")
    except UnicodeDecodeError:
        return None
    if any(c.isspace() for c in key):
        return None
    return key


class _Parser(Parser):
    """nats-py's parser, cheaper for ``MSG`` and ``HMSG``, with a shortcut for the
    headerless messages of a :func:`subscribe_inline` subscription given ``raw``.

    nats-py's ``parse`` tries a regular expression per kind of line in turn (an ``HMSG``
    after ``MSG``'s fails), keeps the line's fields in a dict, and hands each message to
    ``Client._process_msg``: two coroutines, the headers' parse, a ``Msg`` with its subject
    and reply decoded. Here a line the server writes (single spaces, digits where numbers
    go) is split at its spaces; its message goes to ``_process_msg`` exactly as nats-py
    would call it, except a headerless one for a ``raw`` subscription, which updates the
    same statistics and counters and goes straight to ``raw``. Any other line (``PING``,
    ``INFO``, ``-ERR``, anything unusual) is left to nats-py's own ``parse``, with the rest
    of the buffer."""

    async def parse(self, data: bytes = b"") -> None:
        buf = self.buf
        buf.extend(data)
        nc = self.nc
        while buf:
            if self.state == AWAITING_MSG_PAYLOAD:  # the rest of a message split across reads
                needed = self.needed
                if len(buf) < needed + 2:
                    return
                arg = self.msg_arg
                headers = self.header_needed
                if headers > 0:
                    hdr: bytes | None = bytes(buf[:headers])
                    payload = bytes(buf[headers:needed])
                    self.header_needed = 0
                else:
                    hdr = None
                    payload = bytes(buf[:needed])
                del buf[: needed + 2]
                self.state = AWAITING_CONTROL_LINE
                pending = _dispatch(nc, arg["sid"], arg["subject"], arg["reply"], payload, hdr)
                if pending is not None:
                    await pending
                continue
            if buf.startswith(b"MSG "):
                start, headed = 4, False
            elif buf.startswith(b"HMSG "):
                start, headed = 5, True
            else:
                await Parser.parse(self)
                return
            end = buf.find(b"\r\n")
            if end < 0:
                return  # the line is not all there yet (nats-py waits too)
            line = bytes(buf[start:end])
            fields = line.split(b" ")
            count = len(fields) - headed
            if fields != line.split():  # blanks other than single spaces: nats-py's reading
                await Parser.parse(self)
                return
            if count == 3:
                subject, sid, size = fields[0], fields[1], fields[-1]
                reply = b""
            elif count == 4:
                subject, sid, reply, size = fields[0], fields[1], fields[2], fields[-1]
            else:
                await Parser.parse(self)
                return
            header_size = fields[-2] if headed else b"0"
            if not (sid.isdigit() and size.isdigit() and header_size.isdigit()):
                await Parser.parse(self)  # its ProtocolError, or its reading of it
                return
            needed, sid_number, headers = int(size), int(sid), int(header_size)
            begin = end + 2
            if len(buf) < begin + needed + 2:  # wait for the payload, as nats-py does
                del buf[:begin]
                self.msg_arg = {"subject": subject, "sid": sid_number, "reply": reply}
                self.needed, self.header_needed = needed, headers
                self.state = AWAITING_MSG_PAYLOAD
                return
            if headers > 0:
                hdr = bytes(buf[begin : begin + headers])
                payload = bytes(buf[begin + headers : begin + needed])
            else:
                hdr = None
                payload = bytes(buf[begin : begin + needed])
            del buf[: begin + needed + 2]
            pending = _dispatch(nc, sid_number, subject, reply, payload, hdr)
            if pending is not None:
                await pending


def _dispatch(
    nc: Client, sid: int, subject: bytes, reply: bytes, payload: bytes, hdr: bytes | None
) -> Awaitable[None] | None:
    """``nc._process_msg(...)`` to await, or for a headerless message of a ``raw``
    subscription what it would do up to the future's ``set_result``, then ``raw``: None."""
    if hdr is None:
        sub = nc._subs.get(sid)
        if sub is not None:
            future = sub._future
            if type(future) is _Inline and future.raw is not None and not sub._max_msgs:
                stats = nc.stats
                stats["in_msgs"] += 1
                stats["in_bytes"] += len(payload)
                sub._received += 1
                if not future.cancelled():
                    try:
                        future.raw(subject, payload)
                    except Exception:
                        log.exception("a message handler failed on %r", subject)
                return None
    return nc._process_msg(sid, subject, reply, payload, hdr)  # type: ignore[arg-type]
