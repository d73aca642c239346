"""Errors of the test harness: the scenario is wrong, as opposed to a saga outcome.

SagaError                      (saga.errors)
└── HarnessError               the scenario cannot go on as written
    ├── UnhandledCommand       a command needs an answer and nothing is registered for it
    └── ScenarioTimeout        on nats-server, the saga did not settle in time
"""

from __future__ import annotations

from saga.errors import SagaError


class HarnessError(SagaError):
    """The scenario cannot go on as written: a mistake in the test, not in the saga."""


class UnhandledCommand(HarnessError):
    """The engine published a command that expects an answer, and no handler is registered.

    Register one with ``harness.on(subject, ...)``; ``no_reply()`` makes the step time out.
    """


class ScenarioTimeout(HarnessError):
    """On a real nats-server, the saga did not settle within the harness's ``timeout``."""
