"""The one saga-id rule (``saga.definition.saga_id``), shared by intake, ``saga start`` and
the example front ends."""

from __future__ import annotations

import pytest

from saga.definition import parse_definition
from saga.definition.saga_id import as_saga_id, id_from_payload, saga_id_of, trigger_saga_id

NESTED = parse_definition(
    """
name: nested
trigger: {event: shop.ordered, id: {field: order.id}}
steps:
  - name: reserve
    publish: {event: stock.reserve, data: {id: saga.id}}
    success: stock.reserved
    timeout: 30s
"""
)
BY_HEADER = parse_definition(
    """
name: by-header
trigger: {event: shop.ordered, id: {header: Order-Id}}
steps:
  - name: reserve
    publish: {event: stock.reserve, data: {id: saga.id}}
    success: stock.reserved
    timeout: 30s
"""
)


def test_a_dotted_field_is_a_path_into_the_payload() -> None:
    payload = {"order": {"id": "o-42"}, "order.id": "wrong"}
    assert trigger_saga_id(NESTED, payload) == "o-42"
    assert saga_id_of(NESTED, "shop.ordered", payload, {}) == "o-42"
    assert id_from_payload("order.id", payload) == "o-42"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("o-1", "o-1"),
        (7, "7"),
        ("", None),
        (True, None),
        (1.5, None),
        ({"a": 1}, None),
        (None, None),
    ],
)
def test_only_text_and_whole_numbers_are_ids(value: object, expected: str | None) -> None:
    assert as_saga_id(value) == expected
    assert trigger_saga_id(NESTED, {"order": {"id": value}}) == expected


def test_saga_id_header_wins_then_the_trigger_header_then_the_field() -> None:
    payload = {"order": {"id": "from-field"}}
    assert saga_id_of(NESTED, "shop.ordered", payload, {"Saga-Id": "given"}) == "given"
    assert saga_id_of(BY_HEADER, "shop.ordered", payload, {"Order-Id": "h-1"}) == "h-1"
    assert saga_id_of(BY_HEADER, "stock.reserved", payload, {"Order-Id": "h-1"}) is None
    assert trigger_saga_id(BY_HEADER, payload) is None
