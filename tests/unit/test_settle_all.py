"""A batch's verdicts (``Engine._settle_all``): the plain acks go together, first, through
:func:`saga.nats.settle.ack_all`; everything else still through ``Engine._settle`` (a nak's
last delivery, dead letters, tracing, the cleanup of a fallback-mode timer)."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg

from saga.core.events import SagaTriggered
from saga.definition import load_definitions
from saga.engine import service
from saga.engine.apply import Received
from saga.engine.intake import Work
from saga.engine.service import Engine, _Ready
from saga.nats.delivery import Delivery
from saga.nats.dlq import DeadLetterCode
from saga.nats.settle import ACK, Ack, Nak, Term, Verdict
from tests.conftest import DEFINITIONS


def ready(nc: Client, engine: Engine, n: int, stream: str) -> _Ready:
    definition = next(iter(engine.catalog))
    msg = Msg(nc, f"s.{n}", f"$JS.ACK.{stream}.c.1.{n}.{n}.0.0", b"{}", None)
    work = Work(definition, f"id-{n}", SagaTriggered(f"id-{n}", {}))
    return _Ready(msg, work, Received(msg.subject, {}, 0, f"{stream}:{n}"), Delivery(stream, n, 1))


@pytest.mark.parametrize("native", [True, False])
async def test_plain_acks_go_together_first_the_rest_one_by_one(
    monkeypatch: pytest.MonkeyPatch, native: bool
) -> None:
    nc = Client()  # never connected: both ways of settling are replaced below
    engine = Engine(nc, load_definitions([DEFINITIONS]))
    engine.timers.native = native
    events, timers = engine.settings.topology.events_stream, engine.settings.topology.timers_stream
    calls: list[tuple[str, Any]] = []

    async def ack_all(_nc: Client, msgs: list[Msg], _log: logging.Logger) -> None:
        calls.append(("ack_all", [m.subject for m in msgs]))

    async def settle(msg: Msg, verdict: Verdict, *_args: Any) -> None:
        calls.append(("settle", (msg.subject, verdict)))

    monkeypatch.setattr(service, "ack_all", ack_all)
    monkeypatch.setattr(engine, "_settle", settle)
    nak, term = Nak("busy"), Term(DeadLetterCode.MALFORMED, "bad")
    verdicts: list[Verdict] = [nak, ACK, term, Ack("a no-op"), ACK]
    done = [(ready(nc, engine, i, events), v) for i, v in enumerate(verdicts)]
    done.append((ready(nc, engine, 5, timers), ACK))
    await engine._settle_all(done)
    if native:
        assert calls == [
            ("ack_all", ["s.1", "s.3", "s.4", "s.5"]),
            ("settle", ("s.0", nak)),
            ("settle", ("s.2", term)),
        ]
    else:  # a fallback-mode timer's ack also forgets the timer: _settle does that
        assert calls == [
            ("ack_all", ["s.1", "s.3", "s.4"]),
            ("settle", ("s.0", nak)),
            ("settle", ("s.2", term)),
            ("settle", ("s.5", ACK)),
        ]
