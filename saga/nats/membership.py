"""Which engine replicas are alive: a KV bucket of heartbeats that expire on their own.

Each replica puts its key every ``heartbeat`` seconds; the bucket's TTL removes the key
of a replica that stopped (crashed, partitioned away) ``ttl`` seconds after its last beat.
A replica that stops cleanly deletes its key, so the others react at their next beat.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
import uuid

from nats.js import JetStreamContext
from nats.js.api import StorageType
from nats.js.errors import NoKeysError
from nats.js.kv import KeyValue

from saga.nats.provision import StreamSettings, ensure_bucket


def new_member_id() -> str:
    """Readable in logs and unique even for two replicas of one pod."""
    host = "".join(c if c.isalnum() or c in "-_" else "-" for c in socket.gethostname())[:40]
    return f"{host}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class Membership:
    def __init__(
        self,
        js: JetStreamContext,
        bucket: str,
        member_id: str,
        ttl: float,
        replicas: int = 1,
        storage: StorageType = StorageType.FILE,
    ) -> None:
        self.js = js
        self.bucket = bucket
        self.member_id = member_id
        self.ttl = ttl
        self.replicas = replicas
        self.storage = storage
        self._kv: KeyValue | None = None

    async def _bucket(self) -> KeyValue:
        if self._kv is None:
            settings = StreamSettings(replicas=self.replicas, storage=self.storage)
            self._kv = await ensure_bucket(self.js, self.bucket, settings, ttl=self.ttl)
        return self._kv

    async def beat(self, owned: list[int]) -> list[str]:
        """Say we are alive (and what we own, for operators); returns the live members."""
        kv = await self._bucket()
        value = {"member": self.member_id, "owned": owned, "at": time.time()}
        await kv.put(self.member_id, json.dumps(value, allow_nan=False).encode())
        try:
            members: list[str] = await kv.keys()
        except NoKeysError:
            members = []
        if self.member_id not in members:
            members.append(self.member_id)
        return members

    async def leave(self) -> None:
        if self._kv is not None:
            with contextlib.suppress(Exception):
                await self._kv.delete(self.member_id)
