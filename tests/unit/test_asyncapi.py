"""saga asyncapi: every generated document is valid against the official AsyncAPI 3.0.0 JSON
Schema, and says what the definition says (channels, messages, headers, payloads, flow).

The schema is vendored (tests/unit/data/, see its README): no PyPI package ships it. It is
checked with ``jsonschema``, offline.
"""

from __future__ import annotations

import hashlib
import json
import re
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from jsonschema import Draft7Validator

from saga.asyncapi import asyncapi_document, to_yaml
from saga.cli.definitions import asyncapi_command
from saga.definition import load_definition, parse_definition
from saga.definition.model import SagaDefinition
from tests.conftest import DEFINITIONS

SCHEMA = Path(__file__).parent / "data" / "asyncapi-3.0.0.schema.json"
SCHEMA_SHA256 = "1786a007ac00344a8f529e5a6fc5db786b0be6757e0b94a8b95a8a6a52b7fe9a"
KEY = re.compile(r"^[a-zA-Z0-9.\-_]+$")  # the spec's rule for component and map keys

EDGES = """
name: edges
description: Corner cases of the DSL.
trigger: {event: edge.start, id: {header: Edge-Id}, keep: [a, b]}
steps:
  - name: first
    publish:
      event: edge.do
      data: {a: trigger.a, fixed: "'EUR'", n: "`42`", nested: {b: trigger.b, id: saga.id}}
    success: [edge.done, edge.done-too]
    failure: [edge.failed, edge.refused]
    timeout: 1s
    retry: {attempts: 4, backoff: 100ms, on_failure: true}
    compensate:
      publish: {event: edge.undo, data: "{ref: steps.first.ref, other: steps.first.extra}"}
  - name: second
    publish: {event: edge.do}
    success: edge.again
  - name: watched
    success: edge.seen
    compensate:
      publish: {event: edge.unsee}
      success: edge.unseen
      failure: edge.unsee-failed
      timeout: 1s
      retry: {attempts: 2, on_failure: true}
"""


@cache
def validator() -> Draft7Validator:
    return Draft7Validator(json.loads(SCHEMA.read_text()))


def problems(document: dict[str, Any]) -> list[str]:
    """Schema errors, then the spec's rules the JSON Schema does not express."""
    found = [f"{list(e.absolute_path)}: {e.message}" for e in validator().iter_errors(document)]
    for section in ("channels", "operations"):
        found += [f"bad key {k!r}" for k in document[section] if not KEY.match(k)]
    found += [f"bad key {k!r}" for k in document["components"]["messages"] if not KEY.match(k)]
    for op_id, op in document["operations"].items():
        channel = op["channel"]["$ref"]
        for message in op["messages"]:
            if not message["$ref"].startswith(channel + "/messages/"):
                found.append(f"{op_id}: {message['$ref']} is not a message of {channel}")
    for ref in re.findall(r"'\$ref': '([^']+)'", str(document)):
        if resolve(document, ref) is None:
            found.append(f"unresolved {ref}")
    return found


def resolve(document: dict[str, Any], ref: str) -> Any:
    node: Any = document
    for part in ref.removeprefix("#/").split("/"):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def generated(definition: SagaDefinition) -> dict[str, Any]:
    """Through YAML and back, as a tool reading the command's output gets it."""
    loaded: dict[str, Any] = yaml.safe_load(to_yaml(asyncapi_document(definition)))
    return loaded


EXAMPLES = sorted(
    [*DEFINITIONS.glob("*.yaml"), *(DEFINITIONS.parent / "docs/examples").glob("*.yaml")]
)


def test_the_vendored_schema_is_the_official_one() -> None:
    assert hashlib.sha256(SCHEMA.read_bytes()).hexdigest() == SCHEMA_SHA256
    assert (
        json.loads(SCHEMA.read_text())["$id"]
        == "http://asyncapi.com/definitions/3.0.0/asyncapi.json"
    )


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_each_example_definition_gives_a_valid_document(path: Path) -> None:
    assert problems(generated(load_definition(path))) == []


def test_the_corner_cases_give_a_valid_document() -> None:
    assert problems(generated(parse_definition(EDGES))) == []


def _action(document: dict[str, Any]) -> None:
    document["operations"]["trigger"]["action"] = "publish"  # AsyncAPI 2 wording


def _payload(document: dict[str, Any]) -> None:
    document["components"]["messages"]["trigger"]["payload"] = {"type": "objekt"}


def _server(document: dict[str, Any]) -> None:
    del document["servers"]["nats"]["protocol"]


@pytest.mark.parametrize("spoil", [_action, _payload, _server])
def test_the_validator_is_not_vacuous(spoil: Any) -> None:
    document = generated(load_definition(EXAMPLES[0]))
    spoil(document)

    assert list(validator().iter_errors(document)) != []


# -- what the document says ---------------------------------------------------------------


def test_one_channel_per_subject_including_the_lifecycle_events() -> None:
    definition = load_definition(DEFINITIONS / "order-fulfilment.yaml")
    document = generated(definition)

    addresses = {c["address"] for c in document["channels"].values()}

    statuses = {
        f"saga.status.order-fulfilment.{s}"
        for s in ("completed", "compensated", "parked", "reopened", "terminated")
    }
    assert addresses == {*definition.subjects.listened, *definition.subjects.published, *statuses}
    assert all(name == c["address"] for name, c in document["channels"].items())
    assert document["servers"]["nats"] == {
        "host": "localhost:4222",
        "protocol": "nats",
        "description": document["servers"]["nats"]["description"],
    }


def test_the_engine_sends_commands_and_receives_answers_in_flow_order() -> None:
    document = generated(load_definition(DEFINITIONS / "order-fulfilment.yaml"))

    actions = [(op_id, op["action"]) for op_id, op in document["operations"].items()]

    assert actions == [
        ("trigger", "receive"),
        ("reserve_inventory.command", "send"),
        ("reserve_inventory.success", "receive"),
        ("reserve_inventory.failure", "receive"),
        ("charge_payment.command", "send"),
        ("charge_payment.success", "receive"),
        ("charge_payment.failure", "receive"),
        ("schedule_shipping.command", "send"),
        ("schedule_shipping.success", "receive"),
        ("schedule_shipping.failure", "receive"),
        ("charge_payment.compensation", "send"),
        ("charge_payment.compensated", "receive"),
        ("reserve_inventory.compensation", "send"),
        ("reserve_inventory.compensated", "receive"),
        ("status.completed", "send"),
        ("status.compensated", "send"),
        ("status.parked", "send"),
        ("status.reopened", "send"),
        ("status.terminated", "send"),
        ("child.start", "receive"),
        ("child.undo", "receive"),
    ]
    charge = document["operations"]["charge_payment.command"]["description"]
    assert "Step 2 of 3" in charge
    assert "after `reserve_inventory` succeeded (`inventory.reserved`)" in charge
    assert "up to 3 attempts" in charge
    flow = document["info"]["description"]
    assert flow.index("**reserve_inventory**") < flow.index("**charge_payment**")
    assert "newest first: `payment.refund`, then `inventory.release`" in flow


def test_a_command_carries_the_saga_headers_with_its_step_and_kind() -> None:
    document = generated(load_definition(DEFINITIONS / "order-fulfilment.yaml"))

    release = document["components"]["messages"]["reserve_inventory.compensation"]["headers"]

    assert release["required"] == [
        "Saga-Id",
        "Saga-Name",
        "Saga-Step",
        "Saga-Attempt",
        "Saga-Kind",
        "Nats-Msg-Id",
    ]
    props = release["properties"]
    assert props["Saga-Name"] == {"const": "order-fulfilment"}
    assert (props["Saga-Step"], props["Saga-Kind"]) == (
        {"const": "reserve_inventory"},
        {"const": "compensation"},
    )
    assert props["Saga-Attempt"]["description"] == "The engine's attempt, 1 to 5."
    assert {"traceparent", "tracestate"} <= set(props)


def test_payloads_show_what_the_definition_knows() -> None:
    messages = generated(load_definition(DEFINITIONS / "order-fulfilment.yaml"))["components"][
        "messages"
    ]

    charge = messages["charge_payment.command"]["payload"]
    assert charge["required"] == ["order_id", "customer_id", "amount", "currency"]
    assert "trigger.currency || 'EUR'" in charge["properties"]["currency"]["description"]
    trigger = messages["trigger"]["payload"]["properties"]
    assert set(trigger) == {"order_id", "items", "customer_id", "total", "currency", "address"}
    reserved = messages["reserve_inventory.success"]["payload"]
    assert set(reserved["properties"]) == {"reservation_id"}
    assert messages["charge_payment.failure"]["payload"]["required"] == ["reason"]
    status = messages["status.parked"]["payload"]
    assert status["properties"]["status"] == {"const": "parked"}


def test_corner_cases_literals_lists_observed_steps_and_fire_and_forget() -> None:
    document = generated(parse_definition(EDGES))
    messages, operations = document["components"]["messages"], document["operations"]

    first = messages["first.command"]["payload"]["properties"]
    assert (first["fixed"], first["n"]) == ({"const": "EUR"}, {"const": 42})
    assert first["nested"]["required"] == ["b", "id"]
    assert messages["second.command"]["payload"]["maxProperties"] == 0
    assert (
        "The value of `{ref: steps.first.ref"
        in messages["first.compensation"]["payload"]["description"]
    )
    assert {"first.success", "first.success.2", "first.failure", "first.failure.2"} <= set(
        operations
    )
    assert set(document["channels"]["edge.do"]["messages"]) == {"first.command", "second.command"}
    assert "watched.command" not in operations
    assert "observed" in operations["watched.success"]["description"]
    assert "Fire-and-forget" in operations["first.compensation"]["description"]
    assert "first.compensated" not in operations
    assert "parked" in operations["watched.compensation_failed"]["description"]
    assert "Edge-Id" in messages["trigger"]["headers"]["properties"]
    assert set(messages["first.success"]["payload"]["properties"]) == {"ref", "extra"}


# -- the command ----------------------------------------------------------------------------


def test_the_command_prints_yaml_to_stdout() -> None:
    path = DEFINITIONS / "travel-booking.yaml"

    result = CliRunner().invoke(asyncapi_command, [str(path), "--server", "nats://nats-1:4222"])

    assert result.exit_code == 0, result.output
    document = yaml.safe_load(result.output)
    assert problems(document) == []
    assert document["servers"]["nats"]["host"] == "nats-1:4222"
    assert document["info"]["title"] == "travel-booking saga"


def test_the_command_writes_a_file_with_o(tmp_path: Path) -> None:
    out = tmp_path / "travel.asyncapi.yaml"

    result = CliRunner().invoke(
        asyncapi_command, [str(DEFINITIONS / "travel-booking.yaml"), "-o", str(out)]
    )

    assert result.exit_code == 0, result.output
    assert yaml.safe_load(out.read_text())["asyncapi"] == "3.0.0"


def test_the_command_reports_an_invalid_definition_like_validate(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "name: x\ntrigger: {event: a.b}\nsteps:\n  - name: s\n    success: c.d\n    timout: 1s\n"
    )

    result = CliRunner().invoke(asyncapi_command, [str(bad)])

    assert result.exit_code == 1
    assert f"{bad}:6:5: steps[0](s).timout: unknown key" in result.output


def test_a_queue_timeout_step_documents_its_start_report() -> None:
    definition = parse_definition(
        """
name: signup
trigger: {event: signup.requested, id: {field: id}}
steps:
  - name: create_account
    publish: {event: account.create}
    success: account.created
    timeout: 2s
    queue_timeout: 30s
"""
    )
    document = generated(definition)

    assert problems(document) == []
    addresses = {c["address"] for c in document["channels"].values()}
    assert addresses >= set(definition.subjects.listened)
    started = document["operations"]["create_account.started"]
    assert started["action"] == "receive"
    assert "`queue_timeout`" in started["description"]
