"""A saga's ``limits``: how many instances may run at once and how fast new ones start.

Parsed here, enforced by the engine's admission (:mod:`saga.engine.admission`): triggers
beyond a limit wait in the events stream, in order, instead of reaching participants.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema

MAX_RUNNING_CEILING = 100_000
"""A JetStream consumer's ``max_ack_pending`` holds the slots: keep it to a sane size."""
_RATE = re.compile(r"^(\d+(?:\.\d+)?)\s*/\s*(s|m|h)$")
_PER = {"s": 1.0, "m": 60.0, "h": 3600.0}
RATE_PATTERN = r"^[0-9]+(\.[0-9]+)? */ *(s|m|h)$"


def rate_per_second(value: Any) -> float:
    """``<number>/<s|m|h>`` as starts per second; ``ValueError`` says what is wrong (a bare
    number is refused: its unit would be a guess)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        raise ValueError(f"{value!r} has no unit: write '{value}/s', '{value}/m' or '{value}/h'")
    if not isinstance(value, str) or not (found := _RATE.match(value.strip())):
        raise ValueError(
            f"expected a rate such as '100/s', '30/m' or '500/h' (starts per second, minute "
            f"or hour), got {value!r}"
        )
    number = float(found.group(1))
    if number <= 0:
        raise ValueError(f"rate {value!r} must be more than 0")
    return number / _PER[found.group(2)]


def _rate_text(value: Any) -> str:
    rate_per_second(value)
    return str(value).strip()


RateText = Annotated[
    str,
    BeforeValidator(_rate_text),
    WithJsonSchema({"type": "string", "pattern": RATE_PATTERN, "examples": ["100/s", "30/m"]}),
]


class Limits(BaseModel):
    """How many instances of the saga may run at once, and how fast new ones may start.

    A trigger beyond a limit waits, durably and in order, in the events stream."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    max_running: Annotated[int, Field(ge=1, le=MAX_RUNNING_CEILING)] | None = None
    """Instances running or compensating at once, across every engine replica; a trigger
    beyond it waits until one finishes (completed, compensated, terminated or parked)."""
    start_rate: RateText | None = None
    """New instances started per second (``100/s``), minute (``30/m``) or hour (``500/h``),
    per engine replica; triggers beyond it wait."""

    @property
    def starts_per_second(self) -> float | None:
        return None if self.start_rate is None else rate_per_second(self.start_rate)
