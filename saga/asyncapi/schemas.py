"""JSON Schemas of saga messages for the AsyncAPI document: the saga headers, and what a
definition tells about payloads (kept fields, fields read by templates, a command's data
template with its literal values)."""

from __future__ import annotations

from typing import Any

from saga.definition.expressions import Template, compile_expression, template_references
from saga.definition.model import RetryPolicy, SagaDefinition
from saga.protocol import (
    HEADER_ATTEMPT,
    HEADER_KIND,
    HEADER_MSG_ID,
    HEADER_SAGA_ID,
    HEADER_SAGA_NAME,
    HEADER_STEP,
)


def text(description: str) -> dict[str, Any]:
    return {"type": "string", "description": description}


SAGA_ID = {"type": "string", "maxLength": 256, "description": "The instance id."}
TRACE = {
    "traceparent": text("W3C trace context; participants copy it onto their answer."),
    "tracestate": text("W3C trace context; participants copy it onto their answer."),
}
FAILURE = {
    "type": "object",
    "required": ["reason"],
    "properties": {"reason": text("A short machine-readable reason, recorded as the failure.")},
}


def headers_schema(properties: dict[str, Any], required: tuple[str, ...]) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        schema["required"] = list(required)
    return schema


def object_schema(properties: dict[str, Any], description: str) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "description": description}
    if properties:
        schema["properties"] = properties
    return schema


def command_headers(
    definition: SagaDefinition, step: str, kind: str, retry: RetryPolicy | None
) -> dict[str, Any]:
    attempts = retry.attempts if retry is not None else 1
    return headers_schema(
        {
            HEADER_SAGA_ID: SAGA_ID,
            HEADER_SAGA_NAME: {"const": definition.name},
            HEADER_STEP: {"const": step},
            HEADER_ATTEMPT: {
                "type": "string",
                "pattern": "^[1-9][0-9]*$",
                "description": f"The engine's attempt, 1 to {attempts}.",
            },
            HEADER_KIND: {"const": kind},
            HEADER_MSG_ID: text(f"`{definition.name}:<saga id>:{step}:{kind}:<attempt>`."),
            **TRACE,
        },
        required=(
            HEADER_SAGA_ID,
            HEADER_SAGA_NAME,
            HEADER_STEP,
            HEADER_ATTEMPT,
            HEADER_KIND,
            HEADER_MSG_ID,
        ),
    )


def answer_headers(definition: SagaDefinition, step: str, kind: str) -> dict[str, Any]:
    return headers_schema(
        {
            HEADER_SAGA_ID: SAGA_ID,
            HEADER_SAGA_NAME: {"const": definition.name},
            HEADER_STEP: {"const": step},
            HEADER_KIND: {"const": kind},
            HEADER_MSG_ID: text(
                f"`{definition.name}:<saga id>:{step}:{kind}:reply:<attempt>`: the attempt of "
                "the command answered."
            ),
            **TRACE,
        },
        required=(HEADER_SAGA_ID,),
    )


def template_schema(template: Template | None) -> dict[str, Any]:
    """What a command's ``data`` template says of its payload: keys always present, literals."""
    if template is None:
        return {"type": "object", "maxProperties": 0, "description": "Always `{}`."}
    if isinstance(template, str):
        return {"type": "object", "description": f"The value of `{template}`."}
    return {
        "type": "object",
        "required": list(template),
        "properties": {key: _leaf_schema(value) for key, value in template.items()},
    }


def _leaf_schema(value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        return template_schema(value)
    try:
        parsed = compile_expression(value).parsed
    except ValueError:
        return {}
    if parsed.get("type") == "literal":
        return {"const": parsed["value"]}
    return {"description": f"`{value}` (null when absent)."}


def template_reads(definition: SagaDefinition, prefix: tuple[str, ...]) -> set[str]:
    """Fields below ``prefix`` that some template of the definition reads."""
    templates: list[Any] = []
    for step in definition.steps:
        if step.publish is not None and step.publish.data is not None:
            templates.append(step.publish.data)
        if step.compensate is not None and step.compensate.publish.data is not None:
            templates.append(step.compensate.publish.data)
    fields = set()
    for template in templates:
        for chain in template_references(template):
            if chain[: len(prefix)] == prefix and len(chain) > len(prefix):
                fields.add(chain[len(prefix)])
    return fields
