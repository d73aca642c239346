"""The pure parts of the index: which writes a status change makes, search values, queries."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import click
import pytest
from hypothesis import given
from hypothesis import strategies as st

from saga.cli.index import parse_moment, parse_where
from saga.core.state import InstanceState, ParentLink, Status
from saga.definition import parse_definition
from saga.errors import DefinitionError
from saga.index import SagaQuery
from saga.index.entry import (
    TOMBSTONE_TTL,
    IndexWrite,
    SagaSummary,
    entry_subject,
    index_writes,
    search_subject,
    search_text,
    search_values,
    summary_json,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)
SHOP = parse_definition(
    """
name: shop
trigger: {event: shop.ordered}
search: {customer: trigger.customer, total: trigger.total, parcel: steps.ship.parcel}
steps:
  - name: ship
    publish: {event: ship.book}
    success: ship.booked
"""
)


def state(status: Status = Status.RUNNING, **trigger: object) -> InstanceState:
    return InstanceState(
        saga_id="o/1",  # not a safe token: hashed in subjects
        saga_name="shop",
        saga_version=1,
        status=status,
        started_at=T0,
        updated_at=T0,
        context={"trigger": trigger, "steps": {}},
    )


def test_search_values_are_text_and_skip_what_is_not_a_scalar() -> None:
    s = state(customer="cus-1", total=12.5)
    assert search_values(SHOP, s) == {"customer": "cus-1", "total": "12.5"}
    assert search_values(SHOP, state(customer={"a": 1}, total=True)) == {"total": "true"}
    assert search_text(None) is None
    assert search_text(3) == "3"


def test_a_new_instance_writes_its_entry_and_search_markers() -> None:
    s = state(customer="cus-1")
    writes = index_writes(None, s, {}, {"customer": "cus-1"}, 60)
    assert [w.subject for w in writes] == [
        entry_subject("shop", "running", "o/1"),
        search_subject("shop", "customer", "cus-1", "o/1"),
    ]
    assert all(w.ttl is None for w in writes)
    assert SagaSummary.model_validate_json(writes[0].data).search == {"customer": "cus-1"}


def test_a_transition_that_changes_nothing_shown_writes_nothing() -> None:
    s = state(customer="cus-1")
    later = s.model_copy(update={"updated_at": T0 + timedelta(seconds=1)})
    assert index_writes(s, later, {"customer": "cus-1"}, {"customer": "cus-1"}, 60) == []


def test_finishing_moves_the_entry_and_gives_everything_the_records_ttl() -> None:
    s = state(customer="cus-1")
    done = s.model_copy(update={"status": Status.COMPLETED})
    writes = index_writes(s, done, {"customer": "cus-1"}, {"customer": "cus-1"}, 60)
    assert writes == [
        IndexWrite(entry_subject("shop", "completed", "o/1"), writes[0].data, 60),
        IndexWrite(entry_subject("shop", "running", "o/1"), b"", TOMBSTONE_TTL),
        IndexWrite(search_subject("shop", "customer", "cus-1", "o/1"), writes[2].data, 60),
    ]


def test_a_changed_search_value_empties_the_old_marker() -> None:
    s = state()
    writes = index_writes(s, s, {"parcel": "p-1"}, {"parcel": "p-2"}, None)
    assert [(w.subject, w.data == b"") for w in writes] == [
        (entry_subject("shop", "running", "o/1"), False),
        (search_subject("shop", "parcel", "p-2", "o/1"), False),
        (search_subject("shop", "parcel", "p-1", "o/1"), True),
    ]


def test_a_repair_empties_every_other_status() -> None:
    writes = index_writes(None, state(Status.PARKED), {}, {}, None, repair=True)
    emptied = {w.subject for w in writes if not w.data}
    assert emptied == {entry_subject("shop", s, "o/1") for s in Status if s != Status.PARKED}


@given(st.lists(st.sampled_from(list(Status)), min_size=1, max_size=8))
def test_after_any_status_changes_one_live_entry_shows_the_last(statuses: list[Status]) -> None:
    live: dict[str, bytes] = {}
    before = None
    for status in statuses:
        after = state(status)
        for write in index_writes(before, after, {}, {}, 60):
            live[write.subject] = write.data
        before = after
    shown = [s for s, data in live.items() if data]
    assert shown == [entry_subject("shop", statuses[-1], "o/1")]


_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=300)  # JSON-encodable
_MOMENT = (
    st.datetimes(
        min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.timezones()
    )
    | st.datetimes()
)  # with any zone, some naive
_PARENT = st.builds(
    ParentLink, saga=_TEXT, saga_id=_TEXT, step=_TEXT, attempt=st.integers(1, 2**40)
)


@given(
    st.builds(
        InstanceState,
        saga_id=_TEXT,
        saga_name=_TEXT,
        saga_version=st.integers(1, 2**62),
        status=st.sampled_from(list(Status)),
        started_at=_MOMENT,
        updated_at=_MOMENT,
        finished_at=st.none() | _MOMENT,
        failure_step=st.none() | _TEXT,
        failure_reason=st.none() | _TEXT,
        parent=st.none() | _PARENT,
        context=st.just({}),
    ),
    st.dictionaries(_TEXT, _TEXT, max_size=3),
)
def test_an_entry_is_encoded_as_the_summary_model_encodes_it(
    s: InstanceState, search: dict[str, str]
) -> None:
    """:func:`summary_json` skips building the model, not a byte of its JSON."""
    assert summary_json(s, search) == SagaSummary.of(s, search).to_json()


def test_an_entry_of_the_bench_sagas_states_is_the_summary_models_json() -> None:
    """Every state the bench saga passes through (completed, compensated, retried), with
    and without search values, as a child and not."""
    from bench.core import DEFINITION, SCENARIOS
    from saga.core.wakeup import decide_slotted
    from saga.definition.loader import load_definition

    definition = load_definition(DEFINITION)
    parent = ParentLink(saga="p", saga_id="p-1", step="child", attempt=3)
    for make in SCENARIOS.values():
        before: InstanceState | None = None
        for now, event in make("order-7"):
            decision = decide_slotted(definition, before, event, now)
            if decision.state is None:
                continue
            before = decision.state
            for s in (before, before.model_copy(update={"parent": parent})):
                for search in ({}, {"customer": "cus-1", "total": "42.5"}):
                    assert summary_json(s, search) == SagaSummary.of(s, search).to_json()


def test_queries_are_checked() -> None:
    SagaQuery(state="parked", limit=1).check()
    for bad in (
        SagaQuery(limit=0),
        SagaQuery(state="asleep"),
        SagaQuery(cursor="abc"),
        SagaQuery(since=datetime(2026, 1, 1)),
    ):
        with pytest.raises(ValueError):  # noqa: PT011
            bad.check()


def test_cli_times_and_where_pairs() -> None:
    now = datetime(2026, 1, 2, tzinfo=UTC)
    assert parse_moment("1h", now) == now - timedelta(hours=1)
    assert parse_moment("2026-01-01T10:00:00", now) == datetime(2026, 1, 1, 10, tzinfo=UTC)
    with pytest.raises(click.BadParameter):
        parse_moment("yesterday", now)
    assert parse_where(("customer=cus-1", "code=a=b")) == {"customer": "cus-1", "code": "a=b"}
    with pytest.raises(click.BadParameter):
        parse_where(("customer",))


def test_search_expressions_are_checked_like_payloads() -> None:
    text = """
name: shop
trigger: {event: shop.ordered, keep: [id]}
search: {customer: trigger.customer, parcel: step.ship.parcel}
steps:
  - {name: ship, publish: {event: ship.book}, success: ship.booked}
"""
    with pytest.raises(DefinitionError) as raised:
        parse_definition(text)
    problems = {p.path: p.message for p in raised.value.problems}
    assert set(problems) == {"search.customer", "search.parcel"}
    assert "keeps only id" in problems["search.customer"]
