"""``saga.participant.eager.start``: a coroutine runs at once, and becomes a task only
if it has to wait."""

from __future__ import annotations

import asyncio
import contextvars

import pytest

from saga.participant.eager import start

CURRENT: contextvars.ContextVar[str] = contextvars.ContextVar("current", default="outside")


async def test_a_coroutine_that_does_not_wait_is_done_at_once() -> None:
    ran: list[str] = []

    async def quick() -> int:
        ran.append("ran")
        return 7

    outcome = start(quick())
    assert ran == ["ran"]  # before anything else got the loop
    assert outcome.done()
    assert outcome.result() == 7


async def test_its_failure_is_its_outcome() -> None:
    async def failing() -> None:
        raise ValueError("bad")

    outcome = start(failing())
    assert outcome.done()
    with pytest.raises(ValueError, match="bad"):
        outcome.result()


async def test_a_coroutine_that_waits_goes_on_when_what_it_waits_for_is_done() -> None:
    gate: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    steps: list[str] = []

    async def waiting() -> str:
        steps.append("before")
        got = await gate
        steps.append(f"after {got}")
        await asyncio.sleep(0)  # and waits again, as an ordinary task
        return got.upper()

    outcome = start(waiting())
    assert steps == ["before"]
    assert not outcome.done()
    gate.set_result("open")
    assert await asyncio.wait_for(outcome, 5) == "OPEN"
    assert steps == ["before", "after open"]


async def test_a_failure_of_what_it_waits_for_reaches_the_coroutine() -> None:
    gate: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    async def waiting() -> str:
        try:
            return await gate
        except KeyError:
            return "handled"

    outcome = start(waiting())
    gate.set_exception(KeyError("x"))
    assert await asyncio.wait_for(outcome, 5) == "handled"


async def test_a_bare_yield_goes_on_later() -> None:
    async def yielding() -> str:
        await asyncio.sleep(0)
        return "done"

    outcome = start(yielding())
    assert not outcome.done()
    assert await asyncio.wait_for(outcome, 5) == "done"


async def test_it_runs_in_a_copy_of_the_context() -> None:
    gate: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def setting() -> str:
        CURRENT.set("inside")
        await gate
        return CURRENT.get()

    outcome = start(setting())
    assert CURRENT.get() == "outside"  # the caller's context is untouched
    gate.set_result(None)
    assert await asyncio.wait_for(outcome, 5) == "inside"
