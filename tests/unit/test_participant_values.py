"""The per-message values of the SDK: a handler's ``Context`` and the ledger's
``StoredReply`` encoding, both built the cheap way (docs/performance.md, round 6)."""

from __future__ import annotations

import dataclasses
import json
from types import MappingProxyType
from typing import Any, cast

import pytest

from saga import jsonwire
from saga.participant.context import Context, Runtime
from saga.participant.ledger import StoredReply

RUNTIME = Runtime(js=cast(Any, None), effects=cast(Any, None), buckets=cast(Any, None))


def context(**changes: Any) -> Context:
    fields: dict[str, Any] = {
        "service": "inventory",
        "subject": "inventory.reserve",
        "saga_id": "o-1",
        "saga_name": "order",
        "step": "reserve",
        "kind": "step",
        "attempt": 1,
        "delivery": 2,
        "idempotency_key": "order:o-1:reserve:step",
        "headers": MappingProxyType({"Saga-Id": "o-1"}),
        "_runtime": RUNTIME,
    }
    return Context(**(fields | changes))


def test_a_context_has_every_field_and_stays_frozen() -> None:
    """Its own ``__init__`` sets every field the dataclass declares (a field added to the
    class but not to ``__init__`` fails here); it stays frozen and compares by its fields,
    the runtime left out, as before."""
    ctx = context()
    assert {f.name for f in dataclasses.fields(Context)} == set(vars(ctx))
    assert (ctx.saga_id, ctx.delivery, ctx.headers["Saga-Id"]) == ("o-1", 2, "o-1")
    assert ctx == context(_runtime=Runtime(cast(Any, None), cast(Any, None), cast(Any, None)))
    assert ctx != context(attempt=2)
    assert "_runtime" not in repr(ctx)
    with pytest.raises(dataclasses.FrozenInstanceError):
        ctx.attempt = 2  # type: ignore[misc]
    positional = Context(*(getattr(ctx, f.name) for f in dataclasses.fields(Context)))
    assert positional == ctx


@pytest.mark.parametrize(
    "body",
    [b"{}", b'{"a":null,"b":"caf\xc3\xa9 \\"q\\" \\\\"}', b'{"n":1.5,"s":"\\u2028"}'],
    ids=["empty", "null-unicode-quotes", "number-escape"],
)
def test_a_stored_reply_reads_back_as_written_and_as_written_before(body: bytes) -> None:
    """Written by orjson now, by ``jsonwire.dumps`` (or ``json``, ASCII-escaped) before:
    either reads back to the same reply, body bytes included."""
    reply = StoredReply("inventory.reserved", body, {"Saga-Id": "o-1", "Ü": "é"}, True, 3)
    assert StoredReply.from_json(reply.to_json()) == reply
    doc = json.loads(reply.to_json())
    assert list(doc) == ["subject", "data", "headers", "failed", "attempt"]
    assert doc["data"] == body.decode()
    for before in (jsonwire.dumps(doc), json.dumps(doc).encode()):
        assert StoredReply.from_json(before) == reply
