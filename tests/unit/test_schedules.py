"""Scheduled sagas without a server: the ``schedule:`` checks ``saga validate`` runs, the
cron parser (next and previous fire times, what the server reads), the saga id of a tick,
and ``SagaHarness.fire_schedule``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from saga.definition import parse_definition
from saga.definition.saga_id import saga_id_of
from saga.definition.schedule import (
    parse_cron,
    server_pattern,
    tick_of,
    tick_saga_id,
)
from saga.errors import DefinitionError
from saga.protocol import HEADER_SAGA_SCHEDULE, HEADER_SCHEDULE_NEXT, HEADER_SCHEDULER
from saga.testing import HarnessError, SagaHarness, reply

NIGHTLY = """
name: nightly
trigger: {event: report.requested, id: {field: day}, schema: {type: object, required: [kind]}}
schedule: SCHEDULE
steps:
  - name: build
    publish: {event: report.build, data: {kind: trigger.kind}}
    success: report.built
"""
T = datetime(2026, 12, 3, 4, 50, 7, tzinfo=UTC)  # a Thursday


def nightly(schedule: str) -> str:
    return NIGHTLY.replace("SCHEDULE", schedule)


@pytest.mark.parametrize(
    ("schedule", "message"),
    [
        ('{cron: "61 * * * *", data: {kind: a}}', "minute: '61' is outside 0-59"),
        ('{cron: "0 2 * *", data: {kind: a}}', "a cron has 5 fields"),
        ('{cron: "0 0 31 2 *", data: {kind: a}}', "never fires"),
        ('{cron: "@often", data: {kind: a}}', "unknown '@often'"),
        ("{every: 500ms, data: {kind: a}}", "every: must be at least 1s"),
        ("{every: 1500ms, data: {kind: a}}", "every: must be whole seconds"),
        ('{every: 1h, cron: "@daily", data: {kind: a}}', "give either 'cron' or 'every'"),
        ("{data: {kind: a}}", "give either 'cron' or 'every'"),
        ('{cron: "@daily", data: {}}', "schedule.data: the trigger's schema refuses this payload"),
    ],
)
def test_validate_refuses_a_bad_schedule(schedule: str, message: str) -> None:
    with pytest.raises(DefinitionError, match=message):
        parse_definition(nightly(schedule))


@pytest.mark.parametrize(
    ("written", "pattern"),
    [
        ('{cron: "0 2 * * *"}', "0 0 2 * * *"),  # the server wants the seconds field
        ('{cron: "30 0 2 * * MON-FRI"}', "30 0 2 * * MON-FRI"),
        ('{cron: "@Daily"}', "@daily"),
        ("{every: 1h}", "@every 3600s"),
        ("{every: 90s}", "@every 90s"),
    ],
)
def test_the_pattern_the_server_reads(written: str, pattern: str) -> None:
    definition = parse_definition(nightly(written.replace("}", ", data: {kind: a}}")))
    assert definition.schedule is not None
    assert definition.schedule.pattern == pattern


@pytest.mark.parametrize(
    ("cron", "after", "expected"),
    [
        ("0 2 * * *", T, datetime(2026, 12, 4, 2, 0, tzinfo=UTC)),
        ("*/15 9-17 * * MON-FRI", T, datetime(2026, 12, 3, 9, 0, tzinfo=UTC)),
        ("0 0 * * SAT,SUN", T, datetime(2026, 12, 5, 0, 0, tzinfo=UTC)),
        ("0 0 1 JAN *", T, datetime(2027, 1, 1, tzinfo=UTC)),
        ("@hourly", T, datetime(2026, 12, 3, 5, 0, tzinfo=UTC)),
        ("0 0 13 * 5", T, datetime(2026, 12, 4, tzinfo=UTC)),  # day 13 OR a Friday
        ("* * * * * *", T, T.replace(second=8)),
    ],
)
def test_next_fire_time(cron: str, after: datetime, expected: datetime) -> None:
    assert parse_cron(cron).next_after(after) == expected


@settings(max_examples=60, deadline=None)
@given(
    minute=st.sampled_from(["*", "0", "*/7", "5-10", "0,30"]),
    hour=st.sampled_from(["*", "2", "9-17", "*/6"]),
    dom=st.sampled_from(["*", "1", "15", "1-7"]),
    dow=st.sampled_from(["*", "MON", "1-5", "0"]),
    offset=st.integers(0, 400 * 24 * 3600),
)
def test_a_tick_is_found_again_from_the_next_one(
    minute: str, hour: str, dom: str, dow: str, offset: int
) -> None:
    """What the engine relies on: from a fired message's ``Nats-Schedule-Next`` it finds the
    tick that message stands for, so every delivery gets the same saga id."""
    pattern = server_pattern(f"{minute} {hour} {dom} * {dow}", None)
    cron = parse_cron(pattern)
    tick = cron.next_after(T + timedelta(seconds=offset))
    assert tick is not None
    following = cron.next_after(tick)
    assert following is not None
    assert tick_of(pattern, following) == tick
    assert cron.previous_before(following) == tick


def test_a_fired_trigger_gets_its_tick_as_saga_id() -> None:
    definition = parse_definition(nightly('{every: 1h, data: {kind: a, day: "x"}}'))
    headers = {
        HEADER_SCHEDULER: "saga.schedule.nightly",
        HEADER_SCHEDULE_NEXT: "2026-12-03T03:00:00Z",
        HEADER_SAGA_SCHEDULE: "@every 3600s",
    }
    # the tick wins over the trigger's id field (the same data every time)
    assert saga_id_of(definition, "report.requested", {"day": "x"}, headers) == (
        "nightly-20261203T020000Z"
    )
    assert (
        tick_saga_id("nightly", datetime(2026, 12, 3, 2, tzinfo=UTC)) == "nightly-20261203T020000Z"
    )
    broken = {**headers, HEADER_SCHEDULE_NEXT: "soon"}
    assert saga_id_of(definition, "report.requested", {"day": "x"}, broken) == "x"


async def test_the_harness_fires_a_tick_once() -> None:
    harness = SagaHarness.from_text(nightly('{cron: "0 2 * * *", data: {kind: daily}}'))
    harness.on("report.build", reply("report.built"))
    async with harness:
        tick = datetime(2026, 12, 4, 2, tzinfo=UTC)
        saga_id = await harness.fire_schedule(tick)
        again = await harness.fire_schedule(tick)
        result = await harness.result(saga_id)
        following = await harness.fire_schedule()
    assert saga_id == again == "nightly-20261204T020000Z"
    assert result.status == "completed"
    assert result.state is not None
    assert result.state.context["trigger"] == {"kind": "daily"}
    assert [h.event for h in result.state.history].count("saga.started") == 1
    assert following.startswith("nightly-")
    assert following != saga_id


async def test_fire_schedule_needs_a_schedule() -> None:
    plain = nightly("null")
    async with SagaHarness.from_text(plain).on("report.build", reply("report.built")) as h:
        with pytest.raises(HarnessError, match="has no schedule"):
            await h.fire_schedule()


def test_the_console_shows_a_schedule_on_the_definition_page() -> None:
    from saga.console.definitions import _schedule

    shown = str(_schedule(parse_definition(nightly('{cron: "0 2 * * *", data: {kind: "<b>"}}'))))
    assert 'Scheduled: <span class="mono">cron 0 2 * * *</span> (UTC) · next about' in shown
    assert "&lt;b&gt;" in shown
    assert "<b>" not in shown
    every = str(_schedule(parse_definition(nightly("{every: 1h, data: {kind: a}}"))))
    assert "every 3600s" in every
    assert str(_schedule(parse_definition(nightly("null")))) == ""


async def test_the_nightly_report_example_runs_at_its_tick() -> None:
    from pathlib import Path

    example = Path(__file__).parents[2] / "docs/examples/nightly-report.yaml"
    h = SagaHarness.from_file(example)
    h.on("reports.build", reply("reports.built", url="https://reports/1"))
    h.on("reports.mail", reply("reports.mailed"))
    async with h:
        saga_id = await h.fire_schedule(datetime(2026, 12, 4, 2, tzinfo=UTC))
        result = await h.settle(saga_id)
    assert saga_id == "nightly-report-20261204T020000Z"
    assert result.status == "completed"
    assert result.commands[-1].payload == {"url": "https://reports/1"}
