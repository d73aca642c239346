"""Names on the wire shared by the engine, the participant SDK and other-language services.

Documented in ``docs/protocol.md``; change nothing here without changing that page.
"""

from __future__ import annotations

HEADER_SAGA_ID = "Saga-Id"
HEADER_SAGA_NAME = "Saga-Name"
HEADER_STEP = "Saga-Step"
HEADER_ATTEMPT = "Saga-Attempt"
HEADER_KIND = "Saga-Kind"
"""``step`` for a step command, ``compensation`` for an undo command."""
HEADER_MSG_ID = "Nats-Msg-Id"

KIND_STEP = "step"
KIND_COMPENSATION = "compensation"

MAX_PAYLOAD_BYTES = 1024 * 1024
"""A body larger than this (1 MiB) is dead-lettered as ``malformed``."""
MAX_SAGA_ID_LENGTH = 256
"""Characters of a ``Saga-Id``; a longer one is dead-lettered as ``malformed``."""
SCHEMA_VIOLATION = "schema-violation"
"""Dead-letter code of a payload that breaks its definition's ``schema``, and the prefix of
the failure reason of a step whose success payload does."""


def trigger_message_id(saga: str, saga_id: str) -> str:
    """The ``Nats-Msg-Id`` of a trigger: a resent trigger is dropped by the server's duplicate
    window, whoever sends it (``saga start``, a front end, another language)."""
    return f"{saga}:{saga_id}:trigger"


STARTED_PREFIX = "saga.started"
"""``saga.started.<saga>.<step>``: a participant reports that it started a step's command
(same ``Saga-*`` headers as its reply); the step's run ``timeout`` counts from there."""


def started_subject(saga_name: str, step: str) -> str:
    return f"{STARTED_PREFIX}.{saga_name}.{step}"
