from __future__ import annotations

from datetime import UTC, datetime

from saga.core import CancelTimer, PublishEvent, ScheduleTimer, Timer, TimerKind
from saga.core.commands import net_commands

T = Timer(TimerKind.STEP_TIMEOUT, "a", 1)
AT = datetime(2026, 1, 1, tzinfo=UTC)


def test_schedule_then_cancel_of_one_timer_cancels_out() -> None:
    publish = PublishEvent("x", {})
    assert net_commands([ScheduleTimer(T, AT), publish, CancelTimer(T)]) == [publish]


def test_cancel_then_schedule_keeps_both() -> None:
    commands = [CancelTimer(T), ScheduleTimer(T, AT)]
    assert net_commands(commands) == commands


def test_other_timers_are_kept() -> None:
    other = Timer(TimerKind.STEP_TIMEOUT, "a", 2)
    commands = [ScheduleTimer(other, AT), CancelTimer(T)]
    assert net_commands(commands) == commands
