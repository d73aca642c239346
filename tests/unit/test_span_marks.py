"""The spans' marks of ended sagas wait for the exporter to flush; while it does not (a
collector down), their number stays bounded instead of every ended record staying in memory."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any

import pytest

import saga.telemetry.recovery as recovery
from saga.core.state import InstanceState, Status
from saga.store import InstanceRecord, InstanceStore, MemoryInstanceStore
from saga.telemetry.recovery import SpanMarks
from tests.support import wait_for

NOW = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)


class _Telemetry:
    """Enabled, with an exporter that never finishes a flush (or does, when told)."""

    enabled = True

    def __init__(self) -> None:
        self.flushes = 0
        self.flushing = False

    def flush(self) -> bool:
        self.flushes += 1
        return self.flushing


def _ended(n: int) -> InstanceRecord:
    state = InstanceState(
        saga_id=f"o-{n}",
        saga_name="shop",
        saga_version=1,
        status=Status.COMPLETED,
        started_at=NOW,
        updated_at=NOW,
        context={"trigger": {}, "steps": {}},
    )
    return InstanceRecord(state=state)


@pytest.fixture
def marks(monkeypatch: pytest.MonkeyPatch) -> tuple[SpanMarks, _Telemetry]:
    monkeypatch.setattr(recovery, "ENDED_MAX", 50)
    monkeypatch.setattr(recovery, "emit_closed", lambda *args: None)  # no tracer here
    telemetry = _Telemetry()
    return SpanMarks(telemetry, interval=0.01), telemetry  # type: ignore[arg-type]


def test_marks_waiting_for_an_exporter_that_never_flushes_stay_bounded(
    marks: tuple[SpanMarks, Any], caplog: pytest.LogCaptureFixture
) -> None:
    spans, _ = marks
    with caplog.at_level(logging.WARNING, logger="saga.telemetry"):
        for n in range(130):
            spans.transition(f"shop.o-{n}", None, _ended(n), 1)
    assert len(spans._ended) == 50
    assert next(iter(spans._ended)) == "shop.o-80"  # the oldest were given up
    assert spans.given_up == 80
    assert len([r for r in caplog.records if "given up" in r.getMessage()]) == 1


async def test_failed_flushes_keep_the_bound_and_a_later_flush_writes_the_marks(
    marks: tuple[SpanMarks, _Telemetry],
) -> None:
    spans, telemetry = marks
    store = MemoryInstanceStore()
    created: dict[str, int] = {}
    for n in range(40):
        key = f"shop.o-{n}"
        revision = created[key] = await store.create(key, _ended(n))
        spans.transition(key, None, _ended(n), revision)
    stop = asyncio.Event()
    target: InstanceStore = store
    keeping = asyncio.create_task(spans.keep_marking(lambda: target, stop))
    try:
        await wait_for(lambda: telemetry.flushes >= 2, message="two failed flushes")
        for n in range(40, 90):
            key = f"shop.o-{n}"
            revision = created[key] = await store.create(key, _ended(n))
            spans.transition(key, None, _ended(n), revision)
        assert len(spans._ended) == 50
        telemetry.flushing = True
        await wait_for(lambda: not spans._ended, message="the marks written")
    finally:
        stop.set()
        await keeping
    kept = await store.load("shop.o-89")
    assert kept is not None
    assert kept.record.traced == 0  # no history: the mark is its length
    assert kept.revision > created["shop.o-89"]  # the mark was written
    given_up = await store.load("shop.o-0")
    assert given_up is not None
    assert given_up.revision == created["shop.o-0"]  # its mark was given up: not written
    assert spans.given_up == 40
