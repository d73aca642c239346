"""An undo command the saga no longer waits for is acked, not redelivered for minutes.

A compensation handler that keeps failing is redelivered with backoff up to
``max_deliver`` times. Once the engine has its answer (the undo succeeded on another
delivery) or an operator resolved it (``saga resume``), or the saga is over, each of
those deliveries is wasted work and stretches the saga's trace long past its end. So a
*redelivered* undo command is checked against the instance record first (one KV read,
never on a first delivery). A parked undo is still wanted: a late success unparks it.
When the record cannot be read (no permission on the bucket, say), the command runs
as before.
"""

from __future__ import annotations

import logging

from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue

from saga.core.state import CompensationStatus
from saga.nats.topology import Topology, instance_key
from saga.participant.envelope import Envelope
from saga.protocol import KIND_COMPENSATION
from saga.store.base import InstanceRecord

log = logging.getLogger("saga.participant")
RESOLVED = frozenset({CompensationStatus.DONE, CompensationStatus.RESOLVED})


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
        state = InstanceRecord.model_validate_json(entry.value).state
        step = state.steps.get(envelope.step)
        if step is None:
            return None
        if step.compensation in RESOLVED:
            return f"the undo of {envelope.step} is {step.compensation.value}"
        if step.compensation_attempt > envelope.attempt and step.compensation is not (
            CompensationStatus.FAILED
        ):
            return f"attempt {step.compensation_attempt} replaced attempt {envelope.attempt}"
        return None
