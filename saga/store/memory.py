"""An in-memory store with the same revision rules, for the test harness and unit tests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

from saga.errors import RevisionConflict
from saga.store.base import InstanceRecord, Stored, Write, write_each


class MemoryInstanceStore:
    def __init__(self) -> None:
        self._data: dict[str, Stored] = {}
        self._revision = 0

    async def load(self, key: str) -> Stored | None:
        return self._data.get(key)

    async def load_latest(self, key: str) -> Stored | None:
        return await self.load(key)

    async def create(self, key: str, record: InstanceRecord) -> int:
        if key in self._data:
            raise RevisionConflict(f"{key} already exists")
        return self._put(key, record)

    async def update(self, key: str, record: InstanceRecord, revision: int) -> int:
        current = self._data.get(key)
        if current is None or current.revision != revision:
            raise RevisionConflict(f"{key} changed since revision {revision}")
        return self._put(key, record)

    async def write_all(self, writes: Sequence[Write]) -> list[int | Exception]:
        return await write_each(self, writes)

    async def scan(self) -> AsyncIterator[InstanceRecord]:
        for stored in list(self._data.values()):
            yield stored.record

    async def keys(self) -> list[str]:
        return list(self._data)

    def _put(self, key: str, record: InstanceRecord) -> int:
        self._revision += 1
        self._data[key] = Stored(record.model_copy(deep=True), self._revision)
        return self._revision
