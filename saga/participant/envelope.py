"""Reading a delivered message as a saga message, and the headers of its reply.

Everything about header names lives here and in :mod:`saga.protocol`, so the
rest of the SDK deals in typed values only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from saga import jsonwire
from saga.jsonwire import NonFiniteNumberError
from saga.nats.dlq import DeadLetterCode
from saga.protocol import (
    HEADER_ATTEMPT,
    HEADER_KIND,
    HEADER_MSG_ID,
    HEADER_RUN,
    HEADER_SAGA_ID,
    HEADER_SAGA_NAME,
    HEADER_STEP,
    KIND_COMPENSATION,
    KIND_STEP,
    MAX_PAYLOAD_BYTES,
    MAX_SAGA_ID_LENGTH,
    TRACE_HEADERS,
    reply_message_id,
)
from saga.protocol import (
    idempotency_key as step_key,
)

KIND_EVENT = "event"
"""The kind of a message seen by a listener (``@app.on`` without ``success``)."""


class BadMessage(Exception):
    """The message can never be handled, whatever we retry: it goes to the dead letters."""

    def __init__(self, code: DeadLetterCode, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


@dataclass(frozen=True, init=False)
class Envelope:
    """The saga facts of one message, resolved for the route that received it."""

    saga_id: str
    saga_name: str
    step: str
    kind: str
    attempt: int
    run: int = 0
    """``Saga-Run``: an operator redrove the instance this many times."""
    idempotency_key: str = field(init=False, repr=False, compare=False)
    """Same for every attempt and delivery of one step (or one compensation) in one run."""

    def __init__(
        self, saga_id: str, saga_name: str, step: str, kind: str, attempt: int, run: int = 0
    ) -> None:
        """The fields set at once (see :class:`~saga.participant.context.Context`), the key
        with them: every command needs it."""
        self.__dict__.update(
            saga_id=saga_id,
            saga_name=saga_name,
            step=step,
            kind=kind,
            attempt=attempt,
            run=run,
            idempotency_key=step_key(saga_name, saga_id, step, kind, run),
        )


def parse_payload(data: bytes) -> dict[str, Any]:
    """A JSON object (RFC 8259: UTF-8, finite numbers, at most 1 MiB), or
    :class:`BadMessage`; an empty body counts as ``{}``."""
    if len(data) > MAX_PAYLOAD_BYTES:
        raise BadMessage(DeadLetterCode.MALFORMED, f"payload larger than {MAX_PAYLOAD_BYTES} bytes")
    if not data.strip():
        return {}
    try:
        payload = jsonwire.loads(data.decode("utf-8"))
    except NonFiniteNumberError as exc:
        raise BadMessage(
            DeadLetterCode.NON_FINITE_NUMBER, f"payload is not valid JSON: {exc}"
        ) from exc
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise BadMessage(DeadLetterCode.MALFORMED, f"payload is not JSON: {exc}") from exc
    if not isinstance(payload, dict):
        raise BadMessage(
            DeadLetterCode.MALFORMED, f"payload is a JSON {type(payload).__name__}, not an object"
        )
    return payload


def reply_body(result: object) -> bytes | str:
    """A handler's result as the reply's JSON body, or what is wrong with it (a bug in the
    handler: no redelivery would change it). ``None`` replies ``{}``; numbers must be finite
    (RFC 8259 has no NaN or Infinity)."""
    if result is None:
        result = {}
    if not isinstance(result, dict):
        return f"returned {type(result).__name__}, not a dict (a JSON object) or None"
    try:
        return jsonwire.dumps(result)
    except (TypeError, ValueError, RecursionError) as exc:
        return f"returned a dict that is not JSON: {exc}"


def command_envelope(
    headers: Mapping[str, str], kind: str, step: str | None, observed: bool
) -> Envelope:
    """The envelope of a command, or of the event an observed step reacts to, checked as
    ``docs/protocol.md`` says (every failed check is a :class:`BadMessage`).

    For a command, ``Saga-Kind`` must agree with the route's ``kind`` (a compensation
    sent to a step's subject means the definition and the service disagree) and
    ``Saga-Step`` comes from the header, the route's ``step`` being the fallback. For
    an observed step both come from the route: the event's headers describe the
    previous step, whose reply it was.
    """
    saga_id = headers.get(HEADER_SAGA_ID, "").strip()
    if not saga_id:
        raise BadMessage(DeadLetterCode.NO_SAGA_ID, f"no {HEADER_SAGA_ID} header")
    if len(saga_id) > MAX_SAGA_ID_LENGTH:
        raise BadMessage(
            DeadLetterCode.MALFORMED,
            f"{HEADER_SAGA_ID} has {len(saga_id)} characters, more than {MAX_SAGA_ID_LENGTH}",
        )
    saga_name = headers.get(HEADER_SAGA_NAME, "").strip()
    if not saga_name:
        raise BadMessage(DeadLetterCode.MALFORMED, f"no {HEADER_SAGA_NAME} header")
    if observed:
        assert step is not None
        return Envelope(saga_id, saga_name, step, kind, 1)
    header_kind = headers.get(HEADER_KIND, "").strip() or kind
    if header_kind not in (KIND_STEP, KIND_COMPENSATION):
        raise BadMessage(DeadLetterCode.MALFORMED, f"{HEADER_KIND} is {header_kind!r}")
    if header_kind != kind:
        raise BadMessage(
            DeadLetterCode.MALFORMED,
            f"{HEADER_KIND} is {header_kind!r} but this subject is handled as a {kind}",
        )
    resolved = headers.get(HEADER_STEP, "").strip() or step
    if not resolved:
        raise BadMessage(DeadLetterCode.MALFORMED, f"no {HEADER_STEP} header")
    return Envelope(saga_id, saga_name, resolved, kind, _attempt(headers), _run(headers))


def _attempt(headers: Mapping[str, str]) -> int:
    """``Saga-Attempt``: 1 when absent, else a whole number from 1 up."""
    text = headers.get(HEADER_ATTEMPT)
    if text is None or text == "1":  # the common case, without the checks below
        return 1
    text = text.strip()
    if not (text.isascii() and text.isdigit() and int(text) >= 1):
        raise BadMessage(
            DeadLetterCode.MALFORMED, f"{HEADER_ATTEMPT} is {text!r}, not a whole number >= 1"
        )
    return int(text)


def _run(headers: Mapping[str, str]) -> int:
    """``Saga-Run`` (0 when absent)."""
    text = headers.get(HEADER_RUN)
    if text is None:
        return 0
    text = text.strip()
    if not (text.isascii() and text.isdigit()):
        raise BadMessage(DeadLetterCode.MALFORMED, f"{HEADER_RUN} is {text!r}, not a whole number")
    return int(text)


def reply_headers(envelope: Envelope, command: Mapping[str, str]) -> dict[str, str]:
    """Saga headers and trace context for the reply; ``Nats-Msg-Id`` makes a resend a no-op.

    The message id carries the attempt that produced the reply: a redelivery of
    that attempt is deduplicated by the server, while a later attempt the engine
    asked for (a retry after a failure) is not.
    """
    headers = {
        HEADER_SAGA_ID: envelope.saga_id,
        HEADER_SAGA_NAME: envelope.saga_name,
        HEADER_STEP: envelope.step,
        HEADER_KIND: envelope.kind,
        HEADER_ATTEMPT: str(envelope.attempt),
        HEADER_MSG_ID: reply_message_id(envelope.idempotency_key, envelope.attempt),
    }
    headers.update({name: command[name] for name in TRACE_HEADERS if name in command})
    return headers
