"""The participant's per-key locks: one holder per key, nothing left behind."""

from __future__ import annotations

import asyncio

import pytest

from saga.participant.locks import KeyedLocks


async def test_one_holder_per_key_and_other_keys_run_on() -> None:
    locks = KeyedLocks()
    order: list[str] = []
    first_in = asyncio.Event()
    release_first = asyncio.Event()

    async def first() -> None:
        async with locks.hold("k"):
            order.append("first in")
            first_in.set()
            await release_first.wait()
            order.append("first out")

    async def second() -> None:
        async with locks.hold("k"):
            order.append("second in")

    async def other() -> None:
        async with locks.hold("other"):
            order.append("other in")

    one = asyncio.create_task(first())
    await first_in.wait()
    two = asyncio.create_task(second())
    await other()  # another key is not held up
    assert order == ["first in", "other in"]
    release_first.set()
    await asyncio.gather(one, two)
    assert order == ["first in", "other in", "first out", "second in"]
    assert len(locks) == 0


async def test_a_failing_holder_releases_its_key() -> None:
    locks = KeyedLocks()
    with pytest.raises(RuntimeError):
        async with locks.hold("k"):
            raise RuntimeError("handler failed")
    assert len(locks) == 0
    async with locks.hold("k"):
        assert len(locks) == 1


async def test_a_waiter_cancelled_before_its_turn_leaves_nothing_behind() -> None:
    locks = KeyedLocks()
    holding = asyncio.Event()
    done = asyncio.Event()

    async def holder() -> None:
        async with locks.hold("k"):
            holding.set()
            await done.wait()

    async def waiter() -> None:
        async with locks.hold("k"):
            raise AssertionError("never reached")

    held = asyncio.create_task(holder())
    await holding.wait()
    waiting = asyncio.create_task(waiter())
    await asyncio.sleep(0)  # the waiter now waits for the lock
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    done.set()
    await held
    assert len(locks) == 0
