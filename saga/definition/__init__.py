"""Saga definitions: the YAML DSL, its models, validation and diagrams."""

from saga.definition.catalog import Catalog, version_warnings
from saga.definition.loader import (
    definition_files,
    load_catalog,
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
    "Catalog",
    "Compensation",
    "Publish",
    "RetryPolicy",
    "SagaDefinition",
    "SagaIdSource",
    "Step",
    "Trigger",
    "definition_files",
    "json_schema",
    "load_catalog",
    "load_definition",
    "load_definitions",
    "parse_definition",
    "version_warnings",
]
