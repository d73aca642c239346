"""Payload contracts (``schema:``): checked when loading, at intake, in the core, in saga.testing."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from saga.asyncapi import asyncapi_document
from saga.core import decide
from saga.core.events import SagaTriggered, StepSucceeded
from saga.core.state import Status, StepStatus
from saga.definition import load_definition, parse_definition
from saga.engine.intake import Intake, Work, broken_contract
from saga.errors import DefinitionError
from saga.nats.dlq import DeadLetterCode
from saga.nats.settle import Term
from saga.testing import SagaHarness, reply

NOW = datetime(2026, 1, 1, tzinfo=UTC)

ORDER = """
name: order
trigger:
  event: order.placed
  id: {field: id}
  schema:
    type: object
    required: [id, amount]
    properties:
      id: {type: string}
      amount: {type: number, minimum: 0}
steps:
  - name: reserve
    publish: {event: stock.reserve, data: {id: trigger.id}}
    success: stock.reserved
    failure: stock.rejected
    compensate: {publish: {event: stock.release, data: {id: trigger.id}}}
  - name: charge
    publish: {event: pay.charge, data: {id: trigger.id}}
    success: pay.charged
    failure: pay.declined
    schema: {type: object, required: [receipt], properties: {receipt: {type: string}}}
"""

RECEIPT = "schema: {type: object, required: [receipt], properties: {receipt: {type: string}}}"


def problems(text: str, file: Path | None = None) -> list[str]:
    if file is not None:
        file.write_text(text)
    with pytest.raises(DefinitionError) as caught:
        _ = parse_definition(text, "order.yaml") if file is None else load_definition(file)
    return [str(p) for p in caught.value.problems]


# -- loading --------------------------------------------------------------------------------


def test_an_invalid_inline_schema_is_a_load_error_at_its_line_and_field() -> None:
    text = ORDER.replace("amount: {type: number, minimum: 0}", "amount: {type: nummber}")
    [problem] = problems(text)
    assert problem.startswith("order.yaml:11:")
    assert "trigger.schema.properties.amount.type:" in problem
    assert "'nummber' is not valid" in problem


def test_a_schema_file_is_read_relative_to_the_definition(tmp_path: Path) -> None:
    (tmp_path / "schemas").mkdir()
    (tmp_path / "schemas" / "receipt.json").write_text('{"type": "object", "required": ["r"]}')
    file = tmp_path / "order.yaml"
    file.write_text(ORDER.replace(RECEIPT, "schema: schemas/receipt.json"))
    definition = load_definition(file)
    assert definition.steps[1].payload_schema == {"type": "object", "required": ["r"]}


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "cannot read schema file"),
        ('{"type": 5}', "receipt.json is not a valid JSON Schema at type: 5 is not valid"),
        ("[1, 2]", "must hold a mapping (a JSON Schema), not a list"),
        ("{unclosed", "is not JSON or YAML"),
    ],
)
def test_a_bad_schema_file_names_the_definition_line_and_field(
    tmp_path: Path, content: str | None, expected: str
) -> None:
    if content is not None:
        (tmp_path / "receipt.json").write_text(content)
    text = ORDER.replace(RECEIPT, "schema: receipt.json")
    [problem] = problems(text, tmp_path / "order.yaml")
    assert f"{tmp_path / 'order.yaml'}:22:5: steps[1](charge).schema: " in problem
    assert expected in problem


def test_a_misspelt_schema_key_suggests_schema() -> None:
    [problem] = problems(ORDER.replace(RECEIPT, "s" + RECEIPT[2:]))
    assert "unknown key 'shema' (did you mean 'schema'?)" in problem


# -- intake and the core ----------------------------------------------------------------------


def test_an_invalid_trigger_is_dead_lettered_with_the_path_and_message() -> None:
    intake = Intake({"order": parse_definition(ORDER)})
    parsed = intake.parse("order.placed", b'{"id": "a", "amount": -1}', {}, "S", 1)
    assert isinstance(parsed, Term)
    assert parsed.code is DeadLetterCode.SCHEMA_VIOLATION
    assert parsed.reason == "trigger payload at $.amount: -1 is less than the minimum of 0"
    ok = intake.parse("order.placed", b'{"id": "a", "amount": 1}', {}, "S", 2)
    assert isinstance(ok, Work)


def test_a_success_that_breaks_its_schema_is_copied_aside_and_fails_the_step() -> None:
    definition = parse_definition(ORDER)
    broken = broken_contract(definition, StepSucceeded("charge", {"receipt": 7}))
    assert broken is not None
    assert broken.code is DeadLetterCode.SCHEMA_VIOLATION
    assert (
        broken.reason == "success payload of step 'charge' at $.receipt: 7 is not of type 'string'"
    )
    assert broken_contract(definition, StepSucceeded("charge", {"receipt": "r"})) is None
    assert broken_contract(definition, StepSucceeded("reserve", {"anything": 1})) is None


def _charging() -> Any:
    definition = parse_definition(ORDER)
    state = decide(definition, None, SagaTriggered("a", {"id": "a", "amount": 1}), NOW).state
    state = decide(definition, state, StepSucceeded("reserve", {}), NOW).state
    return definition, state


@given(receipt=st.one_of(st.text(), st.integers(), st.none(), st.booleans()))
def test_a_success_is_taken_exactly_when_its_payload_satisfies_the_schema(receipt: Any) -> None:
    definition, state = _charging()
    decision = decide(definition, state, StepSucceeded("charge", {"receipt": receipt}), NOW)
    assert decision.error is None
    assert decision.state is not None
    charge = decision.state.steps["charge"]
    if isinstance(receipt, str):
        assert decision.state.status is Status.COMPLETED
        assert charge.status is StepStatus.SUCCEEDED
    else:
        assert charge.status is StepStatus.FAILED
        assert charge.reason is not None
        assert charge.reason.startswith("schema-violation: at $.receipt")
        assert decision.state.status is Status.COMPENSATED  # reserve's undo is fire-and-forget
        assert "receipt" not in str(decision.state.context["steps"].get("charge", {}))


# -- saga.testing and AsyncAPI ----------------------------------------------------------------


async def test_the_harness_enforces_the_same_contracts() -> None:
    h = SagaHarness.from_text(ORDER)
    h.on("stock.reserve", reply("stock.reserved"))
    h.on("pay.charge", reply("pay.charged", receipt=42))

    refused = await h.run({"id": "bad", "amount": "ten"})
    assert refused.state is None
    assert [(d.code, d.reason) for d in refused.dead_letters] == [
        ("schema-violation", "trigger payload at $.amount: 'ten' is not of type 'number'")
    ]

    broken = await h.run({"id": "a", "amount": 10})
    assert broken.status == "compensated"
    assert broken.state is not None
    assert broken.state.failure_step == "charge"
    assert [d.code for d in broken.dead_letters] == ["schema-violation"]
    assert "stock.release" in broken.published_subjects


def test_asyncapi_carries_the_schemas_as_payloads() -> None:
    document = asyncapi_document(parse_definition(ORDER))
    messages = document["components"]["messages"]
    trigger = next(m for m in messages.values() if m["name"] == "trigger")
    assert trigger["payload"]["required"] == ["id", "amount"]
    assert "dead-lettered" in trigger["payload"]["description"]
    charged = next(m for m in messages.values() if m["name"] == "charge.success")
    assert charged["payload"]["properties"] == {"receipt": {"type": "string"}}
