"""Operator actions (abort, retry, resume, terminate, redrive, emit) over NATS request/reply.

Every engine replica answers ``saga.admin.action`` in one queue group, so the CLI
reaches whichever replica is up; the action then goes through the same ordered,
revision-checked path as any event, is recorded in the instance's history (with who
asked and why) and traced. The admin HTTP API calls the same ``act`` directly.

With an admin token configured, a request over NATS must carry it in an
``Authorization: Bearer <token>`` header, as the HTTP API requires; without one, the
subject's publish permission is the only guard (docs/operations.md).
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import Any, Literal

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from saga import jsonwire
from saga.core.events import (
    Event,
    OperatorAbort,
    OperatorRedrive,
    OperatorResume,
    OperatorRetry,
    OperatorTerminate,
    Signal,
)
from saga.definition.model import SUBJECT_PATTERN
from saga.protocol import HEADER_AUTHORIZATION, OPERATOR_QUEUE, OPERATOR_SUBJECT

log = logging.getLogger("saga.engine")

ACTIONS = ("abort", "retry", "resume", "terminate", "redrive")
EMIT = "emit"
"""Deliver an event to an observed step (``saga emit``); a :class:`Signal` to the core."""


class ActionRequest(BaseModel):
    """One operator action, as the CLI sends it over NATS and the HTTP API reads it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    action: Literal["abort", "retry", "resume", "terminate", "redrive", "emit"]
    saga_id: str = Field(min_length=1, max_length=256)
    name: str | None = None
    """The saga's name, needed only when two sagas share the id."""
    reason: str | None = Field(default=None, max_length=1000)
    """Why, in the operator's words (recorded in the instance history)."""
    actor: str | None = Field(default=None, max_length=200)
    """Who, as the client says (``cli:alice``, ``console:bob``); the engine adds how the
    request came in (``via nats``, ``via http``) and records both."""
    subject: str | None = Field(default=None, pattern=SUBJECT_PATTERN)
    """``emit`` only: the event to deliver, a success or failure subject of an observed step."""
    data: dict[str, Any] | None = None
    """``emit`` only: the event's payload."""

    @model_validator(mode="after")
    def _emit_fields(self) -> ActionRequest:
        if (self.action == EMIT) != (self.subject is not None):
            raise ValueError("'subject' is required by emit, and only by emit")
        if self.data is not None and self.action != EMIT:
            raise ValueError("'data' goes with emit only")
        if self.data is not None:
            jsonwire.dumps(self.data)  # ValueError on NaN or an infinity: JSON cannot carry it
        return self

    def event(self, via: str) -> Event:
        """The core's event; ``via`` is the channel that authenticated the request."""
        actor = f"{self.actor} via {via}" if self.actor else via
        if self.action == EMIT:
            assert self.subject is not None
            return Signal(self.subject, self.data or {}, self.reason, actor)
        if self.action == "abort":
            return OperatorAbort(self.reason or "aborted by operator", actor)
        if self.action == "retry":
            return OperatorRetry(self.reason, actor)
        if self.action == "terminate":
            return OperatorTerminate(self.reason or "terminated by operator", actor)
        if self.action == "redrive":
            return OperatorRedrive(self.reason, actor)
        return OperatorResume(self.reason, actor)


@dataclass(frozen=True)
class ActionResult:
    ok: bool
    message: str
    status: str | None = None
    """The instance's status after the action (or as it was, when refused)."""

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), allow_nan=False).encode()


Act = Callable[[str, str | None, Event, dict[str, str] | None], Awaitable[ActionResult]]
"""An operator action on ``(saga id, saga name or None, event, request headers)``, through
the engine's ordered, revision-checked path: :meth:`saga.engine.Engine.act`."""


def token_matches(given: str | None, token: str) -> bool:
    """``given`` is ``Bearer <token>``; compared in constant time."""
    return hmac.compare_digest((given or "").encode(), f"Bearer {token}".encode())


def auth_headers(token: str | None) -> dict[str, str] | None:
    """What a client puts on its request when it has the admin token."""
    return {HEADER_AUTHORIZATION: f"Bearer {token}"} if token else None


async def serve_operator_requests(nc: Client, act: Act, token: str | None) -> Subscription:
    """Answer every request on :data:`OPERATOR_SUBJECT` (``token``: the admin token a
    request must carry, when set)."""

    async def handle(msg: Msg) -> None:
        result = await _answer(act, token, msg)
        if msg.reply:
            await msg.respond(result.to_json())

    return await nc.subscribe(OPERATOR_SUBJECT, queue=OPERATOR_QUEUE, cb=handle)


async def _answer(act: Act, token: str | None, msg: Msg) -> ActionResult:
    headers = dict(msg.headers or {})
    if token and not token_matches(headers.pop(HEADER_AUTHORIZATION, None), token):
        log.warning("operator action refused: missing or wrong admin token")
        return ActionResult(False, "missing or wrong admin token")
    headers.pop(HEADER_AUTHORIZATION, None)  # never passed on (traces, logs)
    try:
        request = ActionRequest.model_validate_json(msg.data)
    except ValidationError as exc:
        return ActionResult(False, f"bad request: {_problems(exc)}")
    event = request.event("nats")
    try:
        result = await act(request.saga_id, request.name, event, headers)
    except Exception as exc:  # an operator gets an answer, never a timeout
        log.exception("operator action on %s failed", request.saga_id)
        return ActionResult(False, f"failed: {type(exc).__name__}: {exc}")
    log.info(
        "operator %s on %s by %s: %s",
        request.action,
        request.saga_id,
        getattr(event, "actor", None),
        result.message,
    )
    return result


def _problems(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors()
    )
