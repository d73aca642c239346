"""Start a coroutine at once, as a task only if it has to wait: Python 3.12's eager tasks.

A handler that returns without waiting for anything (a lookup in memory, a computation)
then costs no task: creating, scheduling and finishing a task per message was the biggest
single cost of a participant's batch after nats-py itself (``docs/performance.md``). A
handler that waits (a database call) goes on as an ordinary task, so it holds up nothing
else. On Python 3.12+ this is ``asyncio.Task(..., eager_start=True)``; on 3.11 the first
step is run here and the task is made once what it waits for is done (the coroutine then
reads that future's result, as ``await`` does in a task).
"""

from __future__ import annotations

import asyncio
import contextvars
import sys
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def start(coro: Coroutine[Any, Any, T]) -> asyncio.Future[T]:
    """Run ``coro`` now up to its first wait; its outcome as a future (done if it did not wait).

    It runs in a copy of the current context, as a task would."""
    loop = asyncio.get_running_loop()
    if sys.version_info >= (3, 12):  # pragma: no cover - the venv runs 3.11
        return asyncio.Task(coro, loop=loop, eager_start=True)  # type: ignore[call-arg,unused-ignore]
    context = contextvars.copy_context()
    outcome: asyncio.Future[T] = loop.create_future()
    try:
        waits_for = context.run(coro.send, None)
    except StopIteration as finished:
        outcome.set_result(finished.value)
        return outcome
    except asyncio.CancelledError:
        outcome.cancel()
        return outcome
    except Exception as exc:  # the coroutine's own failure, handed on as a task would
        outcome.set_exception(exc)
        return outcome
    if not asyncio.isfuture(waits_for):  # a bare yield (``asyncio.sleep(0)``): go on later
        return loop.create_task(coro, context=context)

    def resume(_: asyncio.Future[Any]) -> None:
        task = loop.create_task(coro, context=context)
        task.add_done_callback(lambda done: _copy(done, outcome))

    waits_for.add_done_callback(resume)
    return outcome


def _copy(done: asyncio.Future[T], outcome: asyncio.Future[T]) -> None:
    if outcome.done():
        return
    if done.cancelled():
        outcome.cancel()
    elif (error := done.exception()) is not None:
        outcome.set_exception(error)
    else:
        outcome.set_result(done.result())
