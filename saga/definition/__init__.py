"""Saga definitions: the YAML DSL, its models, validation and diagrams."""

from saga.definition.loader import (
    definition_files,
    load_definition,
    load_definitions,
    parse_definition,
)
from saga.definition.model import (
    Compensation,
    Publish,
    RetryPolicy,
    SagaDefinition,
    SagaIdSource,
    Step,
    Trigger,
    json_schema,
)

__all__ = [
    "Compensation",
    "Publish",
    "RetryPolicy",
    "SagaDefinition",
    "SagaIdSource",
    "Step",
    "Trigger",
    "definition_files",
    "json_schema",
    "load_definition",
    "load_definitions",
    "parse_definition",
]
