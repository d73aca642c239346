"""``saga trace``'s waterfall draws every case from the record: parked, abandoned, queued undos."""

from __future__ import annotations

import pytest

from saga.cli.render import BAR_WIDTH, waterfall_text
from saga.core import OperatorAbort
from saga.definition import load_definitions
from tests.unit.test_decide import DEFINITIONS, Run, order_in_flight, order_parked


@pytest.fixture
def order() -> Run:
    return Run(load_definitions([DEFINITIONS])["order-fulfilment"])


def row(text: str, label: str) -> list[str]:
    """The columns of the row whose label is ``label`` (the bar is BAR_WIDTH wide)."""
    line = next(line for line in text.splitlines() if line.startswith(label + " "))
    return [part.strip() for part in line.split("  ") if part.strip()]


def bar(text: str, label: str) -> str:
    header = next(line for line in text.splitlines() if line.startswith("step "))
    start = header.index("timeline")
    line = next(line for line in text.splitlines() if line.startswith(label + " "))
    return line[start : start + BAR_WIDTH]


def test_an_undo_that_parked_the_saga_is_drawn_until_it_failed(order: Run) -> None:
    order_parked(order)
    assert order.state is not None
    text = waterfall_text(order.state, None)
    undo = row(text, "undo charge_payment")
    assert undo[1] == "failed"
    assert undo[2] == "5"
    assert undo[4].endswith(("ms", " s")), undo  # a duration, not "-"
    assert bar(text, "undo charge_payment").count("█") > 1


def test_an_undo_queued_behind_a_parked_one_is_listed(order: Run) -> None:
    order_parked(order)
    assert order.state is not None
    text = waterfall_text(order.state, None)
    queued = row(text, "undo reserve_inventory")
    assert queued[1] == "queued"
    assert queued[-1] == "waiting for undo charge_payment"
    assert "█" not in bar(text, "undo reserve_inventory")


def test_an_abandoned_step_is_drawn_until_it_was_given_up(order: Run) -> None:
    order_in_flight(order, "charge_payment")
    order.send(OperatorAbort("stop"), after=5.0)
    assert order.state is not None
    assert order.step("charge_payment").status.value == "abandoned"
    text = waterfall_text(order.state, None)
    abandoned = row(text, "charge_payment")
    assert abandoned[1] == "abandoned"
    assert abandoned[4] == "5000 ms"
    drawn = bar(text, "charge_payment")
    assert drawn.count("█") > 1
    assert not drawn.startswith("█")  # it started after the first step, not at time 0
