"""Operator actions (abort, retry, resume) over NATS request/reply.

Every engine replica answers ``saga.admin.action`` in one queue group, so the CLI
reaches whichever replica is up; the action then goes through the same ordered,
revision-checked path as any event, is recorded in the instance's history and
traced. The admin HTTP API calls :meth:`Engine.act` directly.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from saga.core.events import Event, OperatorAbort, OperatorResume, OperatorRetry

if TYPE_CHECKING:
    from saga.engine.service import Engine

log = logging.getLogger("saga.engine")

OPERATOR_SUBJECT = "saga.admin.action"
QUEUE = "saga-engine"
ACTIONS = ("abort", "retry", "resume")


@dataclass(frozen=True)
class ActionResult:
    ok: bool
    message: str
    status: str | None = None
    """The instance's status after the action (or as it was, when refused)."""

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), allow_nan=False).encode()


def operator_event(action: str, reason: str | None = None) -> Event:
    """``abort``/``retry``/``resume`` -> the core's event; ``ValueError`` for anything else."""
    if action == "abort":
        return OperatorAbort(reason or "aborted by operator")
    if action == "retry":
        return OperatorRetry()
    if action == "resume":
        return OperatorResume()
    raise ValueError(f"unknown action {action!r}; expected one of {', '.join(ACTIONS)}")


def action_request(action: str, saga_id: str, name: str | None, reason: str | None) -> bytes:
    return json.dumps(
        {"action": action, "saga_id": saga_id, "name": name, "reason": reason}, allow_nan=False
    ).encode()


async def serve_operator_requests(engine: Engine) -> Subscription:
    async def handle(msg: Msg) -> None:
        result = await _answer(engine, msg)
        if msg.reply:
            await msg.respond(result.to_json())

    return await engine.nc.subscribe(OPERATOR_SUBJECT, queue=QUEUE, cb=handle)


async def _answer(engine: Engine, msg: Msg) -> ActionResult:
    try:
        request: dict[str, Any] = json.loads(msg.data)
        event = operator_event(str(request.get("action")), request.get("reason"))
        saga_id = str(request["saga_id"])
    except (ValueError, KeyError, TypeError) as exc:
        return ActionResult(False, f"bad request: {exc}")
    try:
        result = await engine.act(saga_id, request.get("name"), event, dict(msg.headers or {}))
    except Exception as exc:  # an operator gets an answer, never a timeout
        log.exception("operator action on %s failed", saga_id)
        return ActionResult(False, f"failed: {type(exc).__name__}: {exc}")
    log.info("operator %s on %s: %s", request.get("action"), saga_id, result.message)
    return result
