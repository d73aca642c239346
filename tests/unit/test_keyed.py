"""The per-instance serializer: one piece of work per key at a time, in submission order."""

from __future__ import annotations

import asyncio

import pytest

from saga.engine.keyed import KeyedSerializer


async def test_work_of_one_key_runs_in_submission_order_one_at_a_time() -> None:
    keyed = KeyedSerializer()
    running: list[int] = []
    done: list[int] = []

    async def work(n: int) -> int:
        running.append(n)
        assert len(running) == 1, "two pieces of work of one key at once"
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        running.remove(n)
        done.append(n)
        return n * 10

    results = await asyncio.gather(*(keyed.run("k", lambda n=n: work(n)) for n in range(6)))
    assert results == [0, 10, 20, 30, 40, 50]
    assert done == [0, 1, 2, 3, 4, 5]
    assert len(keyed) == 0


async def test_different_keys_run_concurrently() -> None:
    keyed = KeyedSerializer()
    both = asyncio.Barrier(2)

    async def work() -> None:
        await both.wait()  # returns only once the other key's work is running too

    runs = (keyed.run(k, work) for k in ("a", "b"))
    await asyncio.wait_for(asyncio.gather(*runs), 10)


async def test_a_failure_hands_the_turn_on() -> None:
    keyed = KeyedSerializer()

    async def fail() -> None:
        raise RuntimeError("boom")

    async def fine() -> str:
        return "ok"

    first = asyncio.create_task(keyed.run("k", fail))
    second = asyncio.create_task(keyed.run("k", fine))
    with pytest.raises(RuntimeError):
        await first
    assert await second == "ok"
    assert len(keyed) == 0


async def test_work_cancelled_while_waiting_is_skipped_and_the_rest_still_run() -> None:
    keyed = KeyedSerializer()
    release = asyncio.Event()
    ran: list[str] = []

    async def work(name: str) -> None:
        ran.append(name)
        if name == "first":
            await release.wait()

    first = asyncio.create_task(keyed.run("k", lambda: work("first")))
    await asyncio.sleep(0)
    waiting = asyncio.create_task(keyed.run("k", lambda: work("cancelled")))
    last = asyncio.create_task(keyed.run("k", lambda: work("last")))
    await asyncio.sleep(0)
    waiting.cancel()
    release.set()
    await asyncio.gather(first, last)
    assert waiting.cancelled()
    assert ran == ["first", "last"]
    assert len(keyed) == 0


async def test_work_cancelled_just_as_its_turn_came_passes_the_turn_on() -> None:
    keyed = KeyedSerializer()
    ran: list[str] = []
    later: list[asyncio.Task[None]] = []

    async def work(name: str) -> None:
        ran.append(name)
        if name == "first":
            await asyncio.sleep(0)  # the second and third queue behind us
            # runs after the turn is handed to the second, before the second resumes
            asyncio.get_running_loop().call_soon(later[0].cancel)

    first = asyncio.create_task(keyed.run("k", lambda: work("first")))
    later.append(asyncio.create_task(keyed.run("k", lambda: work("second"))))
    third = asyncio.create_task(keyed.run("k", lambda: work("third")))
    # without the hand-on, the third would wait for ever
    await asyncio.wait_for(asyncio.gather(first, third, later[0], return_exceptions=True), 10)
    assert later[0].cancelled()
    assert ran == ["first", "third"]
    assert len(keyed) == 0


async def test_a_turn_block_is_serialized_like_run_and_hands_on_after_an_error() -> None:
    keyed = KeyedSerializer()
    order: list[str] = []

    async def block(name: str, fail: bool) -> None:
        async with keyed.turn("k"):
            order.append(f"{name} in")
            await asyncio.sleep(0)
            order.append(f"{name} out")
            if fail:
                raise ValueError(name)

    results = await asyncio.gather(
        block("a", True),
        block("b", False),
        keyed.run("k", lambda: block_free(order)),
        return_exceptions=True,
    )
    assert isinstance(results[0], ValueError)
    assert order == ["a in", "a out", "b in", "b out", "c"]
    assert len(keyed) == 0


async def block_free(order: list[str]) -> None:
    order.append("c")


async def test_a_claimed_turn_is_taken_without_waiting_and_later_work_waits_for_it() -> None:
    keyed = KeyedSerializer()
    assert keyed.claim("k")
    assert not keyed.claim("k")  # held: a second claim fails, it does not queue
    assert keyed.claim("other")
    order: list[str] = []

    async def later() -> None:
        order.append("later")

    waiting = asyncio.ensure_future(keyed.run("k", later))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert order == []  # waits for the claimed turn
    order.append("claimed")
    keyed.leave("k")
    await asyncio.wait_for(waiting, 10)
    assert order == ["claimed", "later"]
    keyed.leave("other")
    assert len(keyed) == 0
