"""An undo command the saga no longer waits for is acked, not redelivered for minutes.

A compensation handler that keeps failing is redelivered with backoff up to
``max_deliver`` times. Once the engine has its answer (the undo succeeded on another
delivery) or an operator resolved it (``saga resume``), or the saga is over, each of
those deliveries is wasted work and stretches the saga's trace long past its end. So a
*redelivered* undo command is checked against the instance record first (one KV read,
never on a first delivery). A parked undo is still wanted: a late success unparks it.
When the record cannot be read (no permission on the bucket, say), the command runs
as before.

The record is read as plain JSON (``state.steps.<step>.compensation`` and
``compensation_attempt``, see ``docs/protocol.md``), not through the engine's models: a
participant does not import the saga core.
"""

from __future__ import annotations

import json
import logging

from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue

from saga.nats.topology import Topology, instance_key
from saga.participant.envelope import Envelope
from saga.protocol import KIND_COMPENSATION

log = logging.getLogger("saga.participant")
RESOLVED = frozenset({"done", "resolved"})
"""Values of ``saga.core.state.CompensationStatus`` that end an undo (a test pins them)."""
FAILED = "failed"


class StaleUndos:
    def __init__(self, js: JetStreamContext, topology: Topology) -> None:
        self._js = js
        self._topology = topology
        self._kv: KeyValue | None = None

    async def resolved(self, envelope: Envelope, delivered: int) -> str | None:
        """Why this delivery of an undo command is no longer wanted (None: run it)."""
        if envelope.kind != KIND_COMPENSATION or delivered <= 1:
            return None
        try:
            if self._kv is None:
                self._kv = await self._js.key_value(self._topology.instances_bucket)
            entry = await self._kv.get(instance_key(envelope.saga_name, envelope.saga_id))
        except KeyNotFoundError:
            return "the saga's instance is gone"
        except Exception as exc:  # cannot tell: keep the old behaviour
            log.debug("cannot read the instance of %s: %r", envelope.saga_id, exc)
            return None
        if not entry.value:
            return "the saga's instance is gone"
        return undo_unwanted(entry.value, envelope.step, envelope.attempt)


def undo_unwanted(record: bytes, step_name: str, attempt: int) -> str | None:
    """Why attempt ``attempt`` of ``step_name``'s undo is no longer wanted, judged from the
    instance record's JSON (None: run it, also when the record cannot be read)."""
    try:
        step = json.loads(record)["state"]["steps"][step_name]
        compensation = step.get("compensation")
        current = step.get("compensation_attempt", 0)
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    if compensation in RESOLVED:
        return f"the undo of {step_name} is {compensation}"
    if isinstance(current, int) and current > attempt and compensation != FAILED:
        return f"attempt {current} replaced attempt {attempt}"
    return None
