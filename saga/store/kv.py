"""Instance records in a JetStream Key-Value bucket, every write revision-checked."""

from __future__ import annotations

from collections.abc import AsyncIterator

from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError, NoKeysError
from nats.js.kv import KeyValue

from saga.errors import RevisionConflict
from saga.store.base import InstanceRecord, Stored


class KvInstanceStore:
    def __init__(self, kv: KeyValue) -> None:
        self.kv = kv

    async def load(self, key: str) -> Stored | None:
        try:
            entry = await self.kv.get(key)
        except KeyNotFoundError:
            return None
        if entry.value is None or entry.revision is None:
            return None
        return Stored(InstanceRecord.model_validate_json(entry.value), entry.revision)

    async def create(self, key: str, record: InstanceRecord) -> int:
        try:
            revision: int = await self.kv.create(key, record.model_dump_json().encode())
        except KeyWrongLastSequenceError as exc:
            raise RevisionConflict(f"{key} already exists") from exc
        return revision

    async def update(self, key: str, record: InstanceRecord, revision: int) -> int:
        try:
            new: int = await self.kv.update(key, record.model_dump_json().encode(), last=revision)
        except KeyWrongLastSequenceError as exc:
            raise RevisionConflict(f"{key} changed since revision {revision}") from exc
        return new

    async def keys(self) -> list[str]:
        try:
            found: list[str] = await self.kv.keys()
        except NoKeysError:
            return []
        return found

    async def scan(self) -> AsyncIterator[InstanceRecord]:
        for key in await self.keys():
            stored = await self.load(key)
            if stored is not None:
                yield stored.record
