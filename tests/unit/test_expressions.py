"""Payload templates: JMESPath leaves, checked at load time, rendered over the context."""

from __future__ import annotations

import json
from typing import Any

import jmespath
import pytest
from hypothesis import given
from hypothesis import strategies as st

from saga.definition.expressions import (
    TemplateError,
    check_template,
    compile_expression,
    compile_template,
    evaluator,
    render,
    template_problems,
    template_references,
)

CONTEXT: dict[str, Any] = {
    "saga": {"id": "s-1", "name": "order-fulfilment", "version": 1},
    "trigger": {"order_id": "o-7", "total": 42.5, "items": [{"sku": "a", "price": 3}]},
    "steps": {"reserve_inventory": {"reservation_id": "r-1"}},
}


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("trigger.order_id", "o-7"),
        ("saga.id", "s-1"),
        ("steps.reserve_inventory.reservation_id", "r-1"),
        ("'EUR'", "EUR"),
        ("`42`", 42),
        ('`{"a": [1, null]}`', {"a": [1, None]}),
        ("trigger.currency || 'EUR'", "EUR"),
        ("trigger.order_id || 'none'", "o-7"),
        ("trigger.missing", None),
        ("trigger.items[0].sku", "a"),
        ("trigger.items[*].sku", ["a"]),
        ("length(trigger.items)", 1),
        ("{id: trigger.order_id, n: `1`}", {"id": "o-7", "n": 1}),
        ("[trigger.order_id, saga.name]", ["o-7", "order-fulfilment"]),
    ],
)
def test_render_evaluates_an_expression(template: str, expected: Any) -> None:
    assert render(template, CONTEXT) == expected


def test_render_builds_a_nested_payload() -> None:
    template = {
        "order": {"id": "trigger.order_id", "amount": "trigger.total"},
        "reservation": "steps.reserve_inventory.reservation_id",
        "currency": "trigger.currency || 'EUR'",
    }
    assert render(template, CONTEXT) == {
        "order": {"id": "o-7", "amount": 42.5},
        "reservation": "r-1",
        "currency": "EUR",
    }


def test_an_expression_failing_at_run_time_renders_as_null() -> None:
    assert render("length(trigger.total)", CONTEXT) is None
    assert render({"n": "abs(trigger.order_id)"}, CONTEXT) == {"n": None}


def test_render_of_an_empty_mapping_is_empty() -> None:
    assert render({}, CONTEXT) == {}


@pytest.mark.parametrize(
    ("template", "chains"),
    [
        ("trigger.order_id", [("trigger", "order_id")]),
        ("saga.id", [("saga", "id")]),
        ("steps.reserve.id || 'none'", [("steps", "reserve", "id")]),
        ("trigger.items[0].sku", [("trigger", "items")]),
        ("trigger.items[*].sku", [("trigger", "items")]),
        ("trigger.items[?price > `1`].sku", [("trigger", "items")]),
        ("trigger.a.b | c", [("trigger", "a", "b")]),
        ("sort_by(trigger.items, &price)", [("trigger", "items")]),
        ("max_by(trigger.items, &price).sku", [("trigger", "items")]),
        ("{a: trigger.a, b: steps.x.y}", [("steps", "x", "y"), ("trigger", "a")]),
        ("[trigger.a, saga.id][0]", [("saga", "id"), ("trigger", "a")]),
        ("steps.reserve.*", [("steps", "reserve")]),
        ("'EUR'", []),
        ('`{"a": 1}`.a', []),
        ("order.id", [("order", "id")]),
    ],
)
def test_template_references_are_the_reads_from_the_root(
    template: str, chains: list[tuple[str, ...]]
) -> None:
    assert template_references(template) == chains


def test_template_references_cover_every_leaf() -> None:
    template = {"a": "trigger.a", "b": {"c": "steps.x.y"}}
    assert template_references(template) == [("trigger", "a"), ("steps", "x", "y")]


def test_template_references_skip_invalid_expressions() -> None:
    assert template_references("trigger.[") == []


def test_a_valid_template_has_no_problems() -> None:
    template = {"a": "trigger.a", "b": {"c": "`1`", "d": "'x'"}, "e": {}}
    assert template_problems(template) == []
    assert check_template(template) == []


@pytest.mark.parametrize(
    ("template", "path", "message"),
    [
        ("trigger.[", (), "invalid expression 'trigger.[': it ends too early"),
        ("trigger..a", (), "unexpected '.' at character 9"),
        ("a $ b", (), "Unknown token $ at character 3"),
        ("", (), "it is empty (for an empty text write \"''\")"),
        ("count(trigger.items)", (), "unknown function count()"),
        ("length(a, b)", (), "length() takes 1 argument(s), got 2"),
        ("not_null()", (), "not_null() takes at least 1 argument(s), got 0"),
        ({"a": {"b": 42}}, ("a", "b"), 'got the number 42: write "`42`"'),
        ({"flag": True}, ("flag",), 'got the boolean true: write "`true`"'),
        ({"x": None}, ("x",), 'no expression given (for a JSON null write "`null`")'),
        ({"xs": ["a"]}, ("xs",), "got a list"),
        ({1: "a"}, ("1",), "payload keys must be text, got 1"),
        (3.5, (), "got the number 3.5"),
    ],
)
def test_template_problems_name_the_leaf(
    template: Any, path: tuple[str, ...], message: str
) -> None:
    [(where, text)] = template_problems(template)
    assert where == path
    assert message in text


def test_check_template_prefixes_dotted_paths() -> None:
    [(where, _)] = check_template({"a": {"b": 1}}, "data")
    assert where == "data.a.b"


def test_a_template_error_lists_every_leaf() -> None:
    error = TemplateError(template_problems({"a": 1, "b": "x..y"}))
    assert len(error.problems) == 2
    assert str(error).startswith("a: expected an expression")
    assert isinstance(error, ValueError)


def test_compile_expression_raises_value_error_on_one_line() -> None:
    with pytest.raises(ValueError, match="invalid expression") as caught:
        compile_expression("a[?b == ]")
    assert "\n" not in str(caught.value)
    assert compile_expression("a.b") is compile_expression("a.b")


KEYS = st.sampled_from(["a", "b", "order_id", "x-y"])
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=3),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(KEYS, inner, max_size=3),
    max_leaves=12,
)


@given(st.lists(KEYS, min_size=1, max_size=4), JSON)
def test_a_field_path_means_what_jmespath_says(keys: list[str], context: object) -> None:
    """Plain paths skip JMESPath's interpreter; they must give exactly its answer."""
    expression = ".".join(f'"{k}"' if "-" in k else k for k in keys)
    assert evaluator(expression)(context) == jmespath.search(expression, context)


LITERALS = st.sampled_from(["'EUR'", "''", "`0`", "`false`", "`null`", "`[]`", "`{}`", "`[1]`"])


@given(st.lists(st.lists(KEYS, min_size=1, max_size=3) | LITERALS, min_size=1, max_size=3), JSON)
def test_a_default_means_what_jmespath_says(parts: list[list[str] | str], context: object) -> None:
    """``a.b || 'x'`` (paths and literals, or-ed) skips the interpreter too: JMESPath's
    answer, falsehood included (``0`` is true, ``''``, ``[]`` and ``{}`` are false)."""
    expression = " || ".join(
        p if isinstance(p, str) else ".".join(f'"{k}"' if "-" in k else k for k in p) for p in parts
    )
    found, meant = evaluator(expression)(context), jmespath.search(expression, context)
    assert json.dumps(found) == json.dumps(meant)  # 0 == False in Python, not in JSON
    as_leaf = compile_template({"k": expression})(context)  # a mapping walks it itself
    assert json.dumps(as_leaf) == json.dumps({"k": meant})


def test_other_expressions_still_go_through_jmespath() -> None:
    context = {"trigger": {"currency": None, "items": [{"qty": 2}, {"qty": 3}]}}
    assert evaluator("sum(trigger.items[].qty)")(context) == 5


def test_a_compiled_template_renders_as_render_does() -> None:
    """``compile_template`` is ``render`` with the lookups done once, failures included."""
    templates: list[Any] = [
        "trigger.order_id",
        "length(trigger.total)",
        "trigger.items[*].sku",
        "not an expression ((",
        {},
        {"a": "trigger.order_id", "b": {"c": "abs(trigger.order_id)", "d": "`[1, 2]`"}},
        {"x": "steps.reserve_inventory"},
        {"deep": "trigger.order_id.x", "gone": "steps.nope.id", "n": "trigger.items[0].price"},
    ]
    for template in templates:
        assert compile_template(template)(CONTEXT) == render(template, CONTEXT)
    with pytest.raises(AttributeError):
        render(["a"], CONTEXT)  # type: ignore[arg-type]
    with pytest.raises(AttributeError):
        compile_template(["a"])(CONTEXT)  # type: ignore[arg-type]


def test_a_publish_payload_is_compiled_once_and_follows_a_copy() -> None:
    from saga.definition.model import Publish

    spec = Publish(event="a.b", data={"id": "trigger.order_id"})
    assert spec.payload(CONTEXT) == {"id": "o-7"}
    assert spec.payload(CONTEXT) == {"id": "o-7"}
    assert spec == Publish(event="a.b", data={"id": "trigger.order_id"})
    assert spec.model_dump() == {"event": "a.b", "data": {"id": "trigger.order_id"}}
    other = spec.model_copy(update={"data": {"total": "trigger.total"}})
    assert other.payload(CONTEXT) == {"total": 42.5}
    assert Publish(event="a.b").payload(CONTEXT) == {}
