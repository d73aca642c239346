"""Which lifecycle events an instance announces (``status_events`` of its definition).

Each announcement is a stored message on ``saga.status.<saga>.<status>``: worth it when
someone consumes them, waste otherwise. ``all`` (the default) announces ``completed``,
``compensated``, ``terminated``, ``parked`` and ``reopened``; ``final`` only the final ones
(``completed``, ``compensated``, ``terminated``); ``none`` nothing (the index, ``saga status`` and the console still tell).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Literal

from saga.core.commands import Command, Finished, Parked, Reopened
from saga.core.decide import Decision

StatusEvents = Literal["all", "final", "none"]


def announced(decision: Decision, level: StatusEvents) -> Decision:
    """``decision`` without the announcements ``level`` leaves out."""
    if level == "all" or not decision.commands:
        return decision
    dropped: tuple[type[Command], ...] = (
        (Parked, Reopened) if level == "final" else (Finished, Parked, Reopened)
    )
    kept = [c for c in decision.commands if not isinstance(c, dropped)]
    return decision if len(kept) == len(decision.commands) else replace(decision, commands=kept)
