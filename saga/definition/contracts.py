"""Payload contracts: the optional JSON Schemas of a saga's trigger and step success payloads.

Pure (no I/O): the loader reads schema files and hands the mappings here. Validators are
compiled once per schema and kept, so checking an event costs one ``iter_errors`` pass.
``jsonschema`` is imported on first use: a participant that never checks a payload does not
pay for it at import time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from saga.definition.model import SagaDefinition
from saga.protocol import SCHEMA_VIOLATION

if TYPE_CHECKING:
    from jsonschema.protocols import Validator

__all__ = [
    "SCHEMA_VIOLATION",
    "schema_problems",
    "success_violation",
    "trigger_violation",
    "violation",
]

_compiled: dict[int, tuple[dict[str, Any], Validator]] = {}
"""Validators by ``id(schema)``; the schema is kept with its validator so its id stays its own."""


def schema_problems(schema: dict[str, Any]) -> list[tuple[tuple[str | int, ...], str]]:
    """Why ``schema`` is not a valid JSON Schema: (path inside the schema, message) pairs."""
    from jsonschema.exceptions import best_match
    from jsonschema.validators import validator_for

    cls = validator_for(schema, default=_default())
    meta = cls(cls.META_SCHEMA)
    error = best_match(meta.iter_errors(schema))
    if error is None:
        return []
    return [(tuple(error.path), error.message)]


def violation(schema: dict[str, Any], data: Any) -> str | None:
    """``None`` when ``data`` satisfies ``schema``, else the best error as ``at <path>: <message>``."""
    from jsonschema.exceptions import best_match
    from referencing.exceptions import Unresolvable

    try:
        error = best_match(_validator(schema).iter_errors(data))
    except Unresolvable as exc:  # a $ref we do not fetch: no remote schemas, by design
        return f"at $: the schema cannot be applied: {exc}"
    if error is None:
        return None
    return f"at {error.json_path}: {error.message}"


def trigger_schema(definition: SagaDefinition) -> dict[str, Any] | None:
    """The trigger's ``schema``, if it has one."""
    schema = definition.trigger.payload_schema
    return schema if isinstance(schema, dict) else None


def success_schema(definition: SagaDefinition, step: str) -> dict[str, Any] | None:
    """The ``schema`` of ``step``'s success payload, if it has one."""
    found = definition.by_name.get(step)
    schema = found.payload_schema if found is not None else None
    return schema if isinstance(schema, dict) else None


def trigger_violation(definition: SagaDefinition, payload: Any) -> str | None:
    """Why a trigger's payload breaks the trigger's ``schema``, or ``None``."""
    schema = trigger_schema(definition)
    return violation(schema, payload) if schema is not None else None


def success_violation(definition: SagaDefinition, step: str, payload: Any) -> str | None:
    """Why a success payload of ``step`` breaks the step's ``schema``, or ``None``."""
    schema = success_schema(definition, step)
    return violation(schema, payload) if schema is not None else None


def _validator(schema: dict[str, Any]) -> Validator:
    kept = _compiled.get(id(schema))
    if kept is not None and kept[0] is schema:
        return kept[1]
    from jsonschema.validators import validator_for

    validator = validator_for(schema, default=_default())(schema)
    _compiled[id(schema)] = (schema, validator)
    return validator


def _default() -> Any:
    from jsonschema import Draft202012Validator

    return Draft202012Validator
