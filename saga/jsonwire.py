"""JSON as RFC 8259 defines it, for everything the project publishes or reads off the wire.

Python's ``json`` writes ``NaN``, ``Infinity`` and ``-Infinity`` by default and reads a
number such as ``1e400`` as ``inf``: a trigger with ``"total": 1e400`` once made the engine
publish ``"amount": Infinity``, which no other JSON parser accepts. Here both directions
refuse non-finite numbers with a ``ValueError`` saying where.

The common case is done by orjson (writing) and msgspec (reading), about 10x faster than
``json`` on a payload (``bench/json_codecs.py``); whatever they refuse or might get
different goes to ``json`` as before, so results and errors stay the standard library's.
orjson writes ``NaN`` as ``null`` (output with a ``null`` in it is written by ``json``
again), refuses integers beyond 64 bits and is used with no option but ``default``; it
reads big integers as floats, so msgspec reads, which refuses lone surrogates. Where they
differ: orjson writes non-ASCII characters as UTF-8, not ``\\u`` escapes (the same JSON),
and a ``UUID`` or a plain ``Enum`` member as its value (``json`` refuses them, or hands
them to ``default``).
"""

from __future__ import annotations

import json
import math
from typing import Any

import msgspec
import orjson

_FAST = orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_DATETIME
"""Dataclasses and datetimes go to ``default`` (or to ``json``, which refuses them) as before."""
_DECODER = msgspec.json.Decoder()


class NonFiniteNumberError(ValueError):
    """A number JSON cannot carry: NaN, Infinity, or a literal too large for a float."""


def dumps(value: Any, **options: Any) -> bytes:
    """``value`` as compact UTF-8 JSON; ``ValueError`` on NaN or an infinity."""
    if options.keys() <= {"default"}:
        try:
            data = orjson.dumps(value, default=options.get("default"), option=_FAST)
        except TypeError:
            pass
        else:
            if b"null" not in data or _finite(value):  # orjson writes NaN, infinities as null
                return data
    return json.dumps(value, allow_nan=False, separators=(",", ":"), **options).encode()


_SCALARS = frozenset({str, int, bool, type(None)})


def _finite(value: Any) -> bool:
    """True: ``value`` is dicts, lists and plain scalars without a NaN or an infinity, so each
    ``null`` orjson wrote for it is a None (a status event's ``"reason": null``, a payload's
    empty field): no second encoding by ``json``, 4x slower. False for anything else (what
    went to ``default``, subclasses): ``json`` decides, as before."""
    kind = type(value)
    if kind is dict:
        items: Any = value.values()
    elif kind is list or kind is tuple:
        items = value
    elif kind is float:
        return math.isfinite(value)
    else:
        return kind in _SCALARS
    for item in items:  # noqa: SIM110 - a loop: all() over a generator takes twice as long
        if type(item) not in _SCALARS and not _finite(item):
            return False
    return True


def loads(data: str | bytes) -> Any:
    """Parse JSON; ``NonFiniteNumberError`` for ``NaN``/``Infinity`` or a number like ``1e400``."""
    try:
        return _DECODER.decode(data)
    except msgspec.MsgspecError:
        pass  # json says what is wrong, or reads what msgspec does not (lone surrogates)
    return json.loads(data, parse_constant=_constant, parse_float=_finite_float)


def _constant(name: str) -> Any:
    raise NonFiniteNumberError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise NonFiniteNumberError(f"number {text[:40]} is out of range (not a finite float)")
    return value
