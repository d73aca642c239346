"""One handler run at a time per idempotency key inside this process.

Two copies of a command in one fetched batch would otherwise both miss the
reply ledger and both run the handler; the ledger would still keep one reply,
but the handler's work would be done twice.
"""

from __future__ import annotations

import asyncio
from types import TracebackType


class _Slot:
    __slots__ = ("lock", "users")

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.users = 0
        """How many hold or wait for the lock."""


class KeyedLocks:
    """Locks created on demand and dropped when nobody holds or waits for them."""

    def __init__(self) -> None:
        self._slots: dict[str, _Slot] = {}

    def hold(self, key: str) -> Hold:
        """``async with locks.hold(key):`` (a plain object: no generator per message)."""
        return Hold(self._slots, key)

    def __len__(self) -> int:
        return len(self._slots)

    def __contains__(self, key: str) -> bool:
        """Someone holds or waits for ``key``."""
        return key in self._slots


class Hold:
    """One user of one key's lock: ``async with`` it, or :meth:`take` and :meth:`release`."""

    __slots__ = ("_key", "_slot", "_slots")

    def __init__(self, slots: dict[str, _Slot], key: str) -> None:
        slot = slots.get(key)
        if slot is None:
            slot = slots[key] = _Slot()
        slot.users += 1
        self._slots, self._key, self._slot = slots, key, slot

    def _leave(self) -> None:
        self._slot.users -= 1
        if self._slot.users <= 0:
            del self._slots[self._key]

    async def take(self) -> None:
        """Wait for the key's lock (``async with`` does this)."""
        try:
            await self._slot.lock.acquire()
        except BaseException:  # cancelled while waiting: no longer a user
            self._leave()
            raise

    def release(self) -> None:
        self._slot.lock.release()
        self._leave()

    async def __aenter__(self) -> None:
        await self.take()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
