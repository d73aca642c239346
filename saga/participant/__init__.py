"""The participant SDK: write a saga step as ``async def handler(ctx, payload)``.

Return a dict to report success, raise :class:`Reject` to report a business
failure, raise anything else to be retried (and dead-lettered at the last
delivery). The wire protocol underneath is documented in ``docs/protocol.md``.
"""

from saga.participant.app import App
from saga.participant.context import Context
from saga.participant.effects import effect_key
from saga.participant.outcomes import HandlerOutcome, NoReply, Reject, Retry
from saga.participant.routes import Handler, Payload
from saga.participant.runner import load_app, run_app, run_participant
from saga.participant.settings import ParticipantSettings
from saga.participant.worker import Worker
from saga.protocol import EFFECTS_BUCKET

__all__ = [
    "EFFECTS_BUCKET",
    "App",
    "Context",
    "Handler",
    "HandlerOutcome",
    "NoReply",
    "ParticipantSettings",
    "Payload",
    "Reject",
    "Retry",
    "Worker",
    "effect_key",
    "load_app",
    "run_app",
    "run_participant",
]
