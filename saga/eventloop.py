"""Which event loop a process runs on: uvloop's when wanted and installed, else asyncio's.

Shared by ``saga run`` and the participants (``run_app``, ``saga participant``); nothing
here is imported before a process starts its loop, so importing the SDK stays light.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import asyncio

UVLOOP_ENV = "SAGA_UVLOOP"
"""Off with ``0``, ``false``, ``no`` or ``off``; on when unset (``--uvloop/--no-uvloop``)."""

_OFF = frozenset({"0", "false", "f", "no", "n", "off"})


def uvloop_wanted(value: str | None) -> bool:
    """``$SAGA_UVLOOP`` read as the CLI's ``--uvloop/--no-uvloop`` reads it."""
    return value is None or value.strip().lower() not in _OFF


def loop_factory(use_uvloop: bool = True) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's event loop when wanted and installed (extra ``fast``), else None (asyncio's
    own). A saga process's work is many small messages on one event loop: uvloop's loop and
    sockets, written in C, cost less CPU per message (docs/performance.md)."""
    if not use_uvloop:
        return None
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop
