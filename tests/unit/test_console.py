"""The console's pure parts: timeline kinds, diagram colours, query parsing, escaping."""

from __future__ import annotations

import ast
import tomllib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from saga.console.app import ConsoleSettings
from saga.console.html import e, url
from saga.console.instances import _summary
from saga.console.queries import ListQuery, decode_cursor, list_page, parse_query, parse_where
from saga.console.view import KINDS, coloured_diagram, kind_of, step_classes
from saga.core.state import CompensationStatus, InstanceState, Status, StepState, StepStatus
from saga.definition import parse_definition
from saga.nats.topology import instance_key
from saga.store import InstanceRecord, MemoryInstanceStore

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 1, 31, 12, 0, tzinfo=UTC)
SHOP = """
name: shop
trigger: {event: shop.ordered}
steps:
  - name: reserve
    publish: {event: stock.reserve}
    success: stock.reserved
    compensate: {publish: {event: stock.release}, success: stock.released}
  - name: charge
    publish: {event: pay.charge}
    success: pay.charged
    failure: pay.declined
"""


def _recorded_events() -> set[str]:
    """Every literal history event name the core records (``record("...")``)."""
    tree = ast.parse((ROOT / "saga/core/decide.py").read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "record":
            for arg in node.args[:1]:
                for value in ast.walk(arg):
                    if isinstance(value, ast.Constant) and isinstance(value.value, str):
                        found.add(value.value)
    return {f for f in found if "." in f and not f.endswith(".")}  # not f"saga.{...}"


def test_every_history_event_has_a_timeline_kind() -> None:
    events = _recorded_events()
    assert "compensation.started" in events
    unknown = sorted(event for event in events if kind_of(event) == "other")
    assert unknown == []
    assert {f"saga.{s.value}" for s in Status if s.terminal} <= set(KINDS)
    assert kind_of("operator.abort") == "operator"


def test_diagram_nodes_are_coloured_by_state() -> None:
    definition = parse_definition(SHOP)
    state = InstanceState(
        saga_id="o-1",
        saga_name="shop",
        saga_version=1,
        status=Status.COMPENSATED,
        started_at=NOW,
        updated_at=NOW,
        steps={
            "reserve": StepState(status=StepStatus.SUCCEEDED, compensation=CompensationStatus.DONE),
            "charge": StepState(status=StepStatus.FAILED),
        },
    )
    assert step_classes(definition, state) == {
        "reserve": "succeeded",
        "undo_reserve": "compensated",
        "charge": "failed",
        "compensated": "reached",
    }
    source = coloured_diagram(definition, state)
    assert source.startswith(coloured_diagram(definition))
    assert "  class charge failed\n" in source
    assert "  classDef failed " in source


def test_query_reads_filters_and_reports_every_problem() -> None:
    query, problems = parse_query(
        {
            "saga": "shop",
            "state": "parked",
            "since": "1h",
            "until": "2026-01-31T11:30",
            "where": "a=1 b=x",
        },
        ["shop"],
        NOW,
    )
    assert problems == []
    assert (query.saga, query.state, query.where) == ("shop", "parked", {"a": "1", "b": "x"})
    assert query.since == NOW - timedelta(hours=1)
    assert query.until == datetime(2026, 1, 31, 11, 30, tzinfo=UTC)
    _, problems = parse_query(
        {"saga": "nope", "state": "odd", "since": "soon", "where": "x", "limit": "0"}, ["shop"], NOW
    )
    assert len(problems) == 5
    with pytest.raises(ValueError, match="expected key=value"):
        parse_where("customer")
    assert decode_cursor("not base64!") is None


def test_text_and_urls_are_escaped() -> None:
    assert e('<script>"x"&') == "&lt;script&gt;&quot;x&quot;&amp;"
    assert e(None) == ""
    assert url("sagas", {"q": "a&b=<c>", "state": None}) == "/console/sagas?q=a%26b%3D%3Cc%3E"


def test_the_wheel_ships_the_vendored_files() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "console/static/*" in config["tool"]["setuptools"]["package-data"]["saga"]
    static = ROOT / "saga/console/static"
    for name in ("mermaid.min.js", "mermaid.LICENSE", "console.js", "console.css"):
        assert (static / name).is_file(), name


async def test_without_an_index_the_list_reads_the_store() -> None:
    store = MemoryInstanceStore()
    for i, (status, customer) in enumerate(
        [("completed", "cus-1"), ("parked", "cus-2"), ("parked", "cus-1")]
    ):
        state = InstanceState(
            saga_id=f"o-{i}",
            saga_name="shop",
            saga_version=1,
            status=Status(status),
            started_at=NOW + timedelta(seconds=i),
            updated_at=NOW + timedelta(seconds=i),
            context={"trigger": {"customer": customer}, "steps": {}},
        )
        await store.create(instance_key("shop", state.saga_id), InstanceRecord(state=state))
    first = await list_page(store, ListQuery(limit=2))
    assert [s.saga_id for s in first.items] == ["o-2", "o-1"]
    assert first.next_cursor is not None
    rest = await list_page(store, ListQuery(limit=2, cursor=first.next_cursor))
    assert ([s.saga_id for s in rest.items], rest.next_cursor) == (["o-0"], None)
    parked = await list_page(store, ListQuery(state="parked", where={"customer": "cus-1"}))
    assert [s.saga_id for s in parked.items] == ["o-2"]
    found = await list_page(store, ListQuery(search="cus-2"))
    assert ([s.saga_id for s in found.items], found.exact) == (["o-1"], None)
    exact = await list_page(store, ListQuery(search="o-0"))
    assert exact.exact is not None
    assert exact.exact.saga_id == "o-0"
    since = await list_page(store, ListQuery(since=NOW + timedelta(seconds=1)))
    assert [s.saga_id for s in since.items] == ["o-2", "o-1"]


def test_trace_link_follows_the_configured_viewer(monkeypatch: pytest.MonkeyPatch) -> None:
    state = InstanceState(
        saga_id="o-1", saga_name="shop", saga_version=1, started_at=NOW, updated_at=NOW
    )
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    monkeypatch.setenv("SAGA_TRACE_URL", "http://localhost:16686/trace/{trace_id}")
    template = ConsoleSettings.from_env(None).trace_url
    shown = _summary(state, trace_id, template)
    assert f'href="http://localhost:16686/trace/{trace_id}"' in shown
    assert "16686" not in _summary(state, trace_id, None)  # the id, as text
    assert trace_id in _summary(state, trace_id, None)
    for wrong in ("javascript:alert(1)//{trace_id}", "http://localhost:16686/no-placeholder"):
        monkeypatch.setenv("SAGA_TRACE_URL", wrong)
        assert ConsoleSettings.from_env(None).trace_url is None
