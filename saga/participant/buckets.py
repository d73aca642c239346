"""KV buckets a participant keeps: opened once per connection, created when missing."""

from __future__ import annotations

import asyncio

from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig
from nats.js.errors import BucketNotFoundError
from nats.js.kv import KeyValue

from saga.nats.provision import StreamSettings


class Buckets:
    """Bucket handles by name; a bucket created here expires entries after ``events_max_age``.

    Records keyed by an idempotency key are useless once the commands that could
    repeat that key have left the events stream, so they age out with it.
    """

    def __init__(self, js: JetStreamContext, settings: StreamSettings) -> None:
        self._js = js
        self._settings = settings
        self._open: dict[str, KeyValue] = {}
        self._lock = asyncio.Lock()

    async def get(self, name: str) -> KeyValue:
        kv = self._open.get(name)
        if kv is not None:
            return kv
        async with self._lock:
            if name not in self._open:
                self._open[name] = await self._ensure(name)
            return self._open[name]

    async def _ensure(self, name: str) -> KeyValue:
        try:
            return await self._js.key_value(name)
        except BucketNotFoundError:
            pass
        return await self._js.create_key_value(
            KeyValueConfig(
                bucket=name,
                history=1,
                ttl=self._settings.events_max_age,
                storage=self._settings.storage,
                replicas=self._settings.replicas,
                direct=True,
            )
        )
