"""The participant SDK: write a saga step as ``async def handler(ctx, payload)``.

Return a dict to report success, raise :class:`Reject` to report a business
failure, :class:`Retry` to be redelivered later, :class:`NoReply` to say nothing;
raise anything else to be retried (and dead-lettered at the last delivery). The wire
protocol underneath is documented in ``docs/protocol.md``.

Everything else lives in its module: ``saga.participant.testing`` (handlers in memory),
``saga.participant.chaos`` (faults on request), ``saga.participant.runner``
(``load_app``, ``run_participant``), ``saga.participant.effects`` (``effect_key``).
"""

from saga.participant.app import App
from saga.participant.context import Context
from saga.participant.outcomes import NoReply, Reject, Retry
from saga.participant.runner import run_app
from saga.participant.settings import ParticipantSettings

__all__ = ["App", "Context", "NoReply", "ParticipantSettings", "Reject", "Retry", "run_app"]
