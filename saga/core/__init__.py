"""The pure core: instance state, events in, commands out, and the ``decide`` state machine.

Nothing here does I/O or reads a clock; adapters feed it events and carry out its commands.
"""

from saga.core.commands import (
    CancelTimer,
    Command,
    Finished,
    Parked,
    PublishEvent,
    Reopened,
    ScheduleTimer,
)
from saga.core.decide import Decision, decide
from saga.core.events import (
    CompensationFailed,
    CompensationSucceeded,
    Event,
    OperatorAbort,
    OperatorRedrive,
    OperatorResume,
    OperatorRetry,
    OperatorTerminate,
    SagaTriggered,
    Signal,
    StepFailed,
    StepStarted,
    StepSucceeded,
    Timer,
    TimerFired,
    TimerKind,
    classify,
)
from saga.core.state import (
    CompensationStatus,
    HistoryEntry,
    InstanceState,
    Status,
    StepState,
    StepStatus,
)

__all__ = [
    "CancelTimer",
    "Command",
    "CompensationFailed",
    "CompensationStatus",
    "CompensationSucceeded",
    "Decision",
    "Event",
    "Finished",
    "HistoryEntry",
    "InstanceState",
    "OperatorAbort",
    "OperatorRedrive",
    "OperatorResume",
    "OperatorRetry",
    "OperatorTerminate",
    "Parked",
    "PublishEvent",
    "Reopened",
    "SagaTriggered",
    "ScheduleTimer",
    "Signal",
    "Status",
    "StepFailed",
    "StepStarted",
    "StepState",
    "StepStatus",
    "StepSucceeded",
    "Timer",
    "TimerFired",
    "TimerKind",
    "classify",
    "decide",
]
