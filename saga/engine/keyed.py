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
        async with self.turn(key):
            return await work()

    def turn(self, key: str) -> Turn:
        """``async with keyed.turn(key):`` the block runs as :meth:`run` runs its work, with
        no frame of ours between the caller and what the block awaits (a message's coroutine
        chain is resumed once per ack it waits for: each frame less is less work)."""
        return Turn(self, key)

    def claim(self, key: str) -> bool:
        """Take ``key``'s turn now if nobody has it (no await); :meth:`leave` ends it."""
        if key in self._waiting:
            return False
        self._waiting[key] = deque()
        return True

    async def enter(self, key: str) -> None:
        """Wait for ``key``'s turn (:meth:`turn` calls this; :meth:`leave` ends it)."""
        if self.claim(key):
            return
        waiting = self._waiting[key]
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiting.append(turn)
        try:
            await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():
                self.leave(key)  # our turn came as we were cancelled: pass it on
            raise  # (a cancelled turn is skipped by whoever hands on)

    def leave(self, key: str) -> None:
        """End a turn of ``key``: the next waiting work of the key runs."""
        waiting = self._waiting[key]
        while waiting:
            turn = waiting.popleft()
            if not turn.done():
                turn.set_result(None)
                return
        del self._waiting[key]

    def __len__(self) -> int:
        return len(self._waiting)


class Turn:
    """One turn of a key (see :meth:`KeyedSerializer.turn`)."""

    __slots__ = ("_key", "_keyed")

    def __init__(self, keyed: KeyedSerializer, key: str) -> None:
        self._keyed = keyed
        self._key = key

    async def __aenter__(self) -> None:
        await self._keyed.enter(self._key)

    async def __aexit__(self, *exc: object) -> None:
        self._keyed.leave(self._key)
