"""Run work for one key at a time, in the order it was submitted; different keys run concurrently."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


class KeyedSerializer:
    """A queue of turns per busy key. Work on a key nobody is working on runs at once
    without a future (the common case: one event per instance at a time); later work waits
    for its turn, a future handed on by the work before it."""

    def __init__(self) -> None:
        self._waiting: dict[str, deque[asyncio.Future[None]]] = {}

    async def run(self, key: str, work: Callable[[], Awaitable[T]]) -> T:
        """Queue ``work`` behind earlier work of ``key``; the queue position is taken before any await."""
        waiting = self._waiting.get(key)
        if waiting is None:
            self._waiting[key] = deque()
        else:
            turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            waiting.append(turn)
            try:
                await turn
            except asyncio.CancelledError:
                if turn.done() and not turn.cancelled():
                    self._hand_on(key)  # our turn came as we were cancelled: pass it on
                raise  # (a cancelled turn is skipped by whoever hands on)
        try:
            return await work()
        finally:
            self._hand_on(key)

    def _hand_on(self, key: str) -> None:
        waiting = self._waiting[key]
        while waiting:
            turn = waiting.popleft()
            if not turn.done():
                turn.set_result(None)
                return
        del self._waiting[key]

    def __len__(self) -> int:
        return len(self._waiting)
