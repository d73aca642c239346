"""The nats-py internals :mod:`saga.nats.wire` writes through: this fails if nats-py changes
them (then ``publish_empty`` must change with it)."""

from __future__ import annotations

import inspect

from nats.aio.client import Client


def test_the_private_writer_is_what_wire_expects() -> None:
    assert inspect.iscoroutinefunction(Client._send_command)
    assert list(inspect.signature(Client._send_command).parameters)[:2] == ["self", "cmd"]
    assert inspect.iscoroutinefunction(Client._flush_pending)
    client = Client()
    assert client._flush_queue is None  # made by connect; publish tests it the same way
    assert client.stats["out_msgs"] == 0
    assert isinstance(client._pending, list)  # what _send_command appends to


def test_publish_builds_the_same_protocol_line() -> None:
    from nats.protocol.command import pub_cmd

    # publish's line for an empty message without reply (two spaces: the empty reply)
    assert pub_cmd("$JS.ACK.S.c.1.2.3.4.0", "", b"") == b"PUB $JS.ACK.S.c.1.2.3.4.0  0\r\n\r\n"
