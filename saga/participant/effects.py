"""Side effects done once per idempotency key, recorded in a KV bucket.

A redelivered command, a retried attempt or a second copy of the service runs
the handler again; ``once`` makes the effect inside it happen (and be recorded)
once, and hands later runs the first run's result.

What "once" means here: the result is recorded with ``kv.create``, so at most one
result per key ever exists and every run returns it. The function itself runs
again only if a process dies after running it and before recording it, so pass
``ctx.idempotency_key`` on to any external system that can deduplicate.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast

from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from saga.nats.topology import token

T = TypeVar("T")


def effect_key(service: str, effect: str, idempotency_key: str) -> str:
    """The KV key of one effect: ``<service>.<effect>.<token(idempotency key)>``."""
    return f"{token(service)}.{token(effect)}.{token(idempotency_key)}"


class Effects:
    """``once`` over one bucket, for one service."""

    def __init__(self, kv: KeyValue, service: str) -> None:
        self._kv = kv
        self._service = service

    async def once(self, idempotency_key: str, effect: str, fn: Callable[[], Awaitable[T]]) -> T:
        """Run ``fn`` unless this effect was already recorded; return the recorded result.

        ``fn``'s result must be JSON (dict, list, str, number, bool, None) so a
        later run gets the same value back.
        """
        key = effect_key(self._service, effect, idempotency_key)
        recorded = await self._get(key)
        if recorded is not None:
            return cast(T, recorded["result"])
        result = await fn()
        record = {
            "service": self._service,
            "effect": effect,
            "idempotency_key": idempotency_key,
            "result": result,
        }
        try:
            await self._kv.create(key, json.dumps(record, allow_nan=False).encode())
        except KeyWrongLastSequenceError:
            # Another delivery recorded first: its result is the one that counts.
            winner = await self._get(key)
            if winner is not None:
                return cast(T, winner["result"])
            raise
        return result

    async def _get(self, key: str) -> dict[str, Any] | None:
        try:
            entry = await self._kv.get(key)
        except KeyNotFoundError:
            return None
        if entry.value is None:
            return None
        return cast(dict[str, Any], json.loads(entry.value))
