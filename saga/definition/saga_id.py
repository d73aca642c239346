"""The one rule for a saga's id: used by the engine's intake, ``saga start`` and front ends.

A trigger names its id with ``id: {field: <JMESPath>}`` or ``id: {header: <name>}``; every
other event carries ``Saga-Id``. Before this module the rule was written three times and
``saga start`` read ``order.id`` as a top-level key, so its instance got a random id.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from saga.definition.expressions import evaluator
from saga.definition.model import SagaDefinition
from saga.definition.schedule import tick_of, tick_saga_id
from saga.protocol import (
    HEADER_SAGA_ID,
    HEADER_SAGA_SCHEDULE,
    HEADER_SCHEDULE_NEXT,
    HEADER_SCHEDULER,
)


def as_saga_id(value: Any) -> str | None:
    """Text or a whole number (not a bool) as an id; None for anything else or empty text."""
    if isinstance(value, bool) or not isinstance(value, str | int) or value == "":
        return None
    return str(value)


def id_from_payload(field: str, payload: Any) -> str | None:
    """The id the JMESPath ``field`` finds in ``payload`` (``order.id`` is a path)."""
    return as_saga_id(evaluator(field)(payload))


def saga_id_of(
    definition: SagaDefinition, subject: str, payload: Any, headers: Mapping[str, str]
) -> str | None:
    """``Saga-Id`` first (every reply carries it), else the tick of a scheduled trigger,
    else the trigger's id header, else ``id.field``."""
    source = definition.trigger.id
    value: Any = headers.get(HEADER_SAGA_ID)
    if not value and subject == definition.trigger.event and HEADER_SCHEDULER in headers:
        value = scheduled_saga_id(definition, headers)
    if not value and subject == definition.trigger.event and source.header is not None:
        value = headers.get(source.header)
    if not value and source.field is not None:
        value = evaluator(source.field)(payload)
    return as_saga_id(value)


def scheduled_saga_id(definition: SagaDefinition, headers: Mapping[str, str]) -> str | None:
    """``<saga>-<tick>`` for a trigger the server fired from the saga's schedule: the same
    for every delivery of that message, so a tick starts one instance."""
    pattern = headers.get(HEADER_SAGA_SCHEDULE) or (
        definition.schedule.pattern if definition.schedule is not None else None
    )
    try:
        following = datetime.fromisoformat(headers.get(HEADER_SCHEDULE_NEXT, ""))
        tick = tick_of(pattern, following) if pattern else None
    except ValueError:
        return None
    return tick_saga_id(definition.name, tick) if tick is not None else None


def trigger_saga_id(definition: SagaDefinition, payload: Any) -> str | None:
    """The id a trigger with this payload (and no id header) gets from the definition."""
    field = definition.trigger.id.field
    return None if field is None else id_from_payload(field, payload)
