"""Run work for one key at a time, in the order it was submitted; different keys run concurrently."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


class KeyedSerializer:
    def __init__(self) -> None:
        self._tails: dict[str, asyncio.Future[None]] = {}

    async def run(self, key: str, work: Callable[[], Awaitable[T]]) -> T:
        """Queue ``work`` behind earlier work of ``key``; the queue position is taken before any await."""
        previous = self._tails.get(key)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._tails[key] = done
        try:
            if previous is not None:
                await asyncio.shield(previous)
            return await work()
        finally:
            done.set_result(None)
            if self._tails.get(key) is done:
                del self._tails[key]

    def __len__(self) -> int:
        return len(self._tails)
