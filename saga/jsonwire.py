"""JSON as RFC 8259 defines it, for everything the project publishes or reads off the wire.

Python's ``json`` writes ``NaN``, ``Infinity`` and ``-Infinity`` by default and reads a
number such as ``1e400`` as ``inf``: a trigger with ``"total": 1e400`` once made the engine
publish ``"amount": Infinity``, which no other JSON parser accepts. Here both directions
refuse non-finite numbers with a ``ValueError`` saying where.
"""

from __future__ import annotations

import json
import math
from typing import Any


class NonFiniteNumberError(ValueError):
    """A number JSON cannot carry: NaN, Infinity, or a literal too large for a float."""


def dumps(value: Any, **options: Any) -> bytes:
    """``value`` as compact UTF-8 JSON; ``ValueError`` on NaN or an infinity."""
    return json.dumps(value, allow_nan=False, separators=(",", ":"), **options).encode()


def loads(data: str | bytes) -> Any:
    """Parse JSON; ``NonFiniteNumberError`` for ``NaN``/``Infinity`` or a number like ``1e400``."""
    return json.loads(data, parse_constant=_constant, parse_float=_finite_float)


def _constant(name: str) -> Any:
    raise NonFiniteNumberError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise NonFiniteNumberError(f"number {text[:40]} is out of range (not a finite float)")
    return value
