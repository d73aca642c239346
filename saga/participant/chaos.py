"""Faults on request: let a test or a chaos run make a service misbehave, from the payload.

    app = App("payment", wrap=[simulated_faults()])

wraps every handler of the app, so the handlers themselves hold no test code.

A command may carry ``"simulate": {"<target>": "<mode>"}``. The target is the
command's subject (``payment.refund``), or, for a forward step only (not an undo),
the step name (``charge_payment``) or the service name (``payment``). Modes:

- ``timeout``: ack the command and never reply (drives the engine's step timeout);
- ``crash-once``: fail the first delivery of the command, succeed on redelivery;
- ``crash``: fail every delivery (ends in the dead letters, then the step times out);
- ``reject``: report a business failure with reason ``simulated``;
- ``delay:<seconds>``: wait that long, then behave normally.

The engine only forwards what a definition's ``data`` maps, so pass the field on
with ``simulate: trigger.simulate`` in a test definition to drive it from a trigger.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from saga.participant.context import Context
from saga.participant.outcomes import NoReply, Reject
from saga.participant.routes import Handler, Payload
from saga.protocol import KIND_STEP


class SimulatedCrash(RuntimeError):
    """Raised on purpose; redelivered like any unexpected handler error."""


def simulated_mode(ctx: Context, payload: Mapping[str, Any]) -> str | None:
    spec = payload.get("simulate")
    if not isinstance(spec, Mapping):
        return None
    targets = [ctx.subject]
    if ctx.kind == KIND_STEP:
        targets += [ctx.step, ctx.service]
    for target in targets:
        mode = spec.get(target)
        if isinstance(mode, str):
            return mode
    return None


async def simulate(ctx: Context, payload: Mapping[str, Any]) -> None:
    """Misbehave as the payload asks; return normally when it asks nothing of us."""
    mode = simulated_mode(ctx, payload)
    if mode is None:
        return
    if mode == "timeout":
        raise NoReply("simulated timeout")
    if mode == "crash" or (mode == "crash-once" and ctx.delivery == 1):
        raise SimulatedCrash(f"simulated {mode} (delivery {ctx.delivery})")
    if mode == "reject":
        raise Reject("simulated")
    if mode.startswith("delay:"):
        await asyncio.sleep(float(mode.removeprefix("delay:")))


FaultSpec = Callable[[Context, Payload], Awaitable[Mapping[str, Any] | None]]
"""Where a delivery's ``simulate`` mapping comes from (default: the payload's own)."""


async def _from_payload(_: Context, payload: Payload) -> Mapping[str, Any] | None:
    spec = payload.get("simulate")
    return spec if isinstance(spec, Mapping) else None


def simulated_faults(spec: FaultSpec = _from_payload) -> Callable[[Handler], Handler]:
    """A wrapper for :class:`~saga.participant.App`: before each handler runs, misbehave as
    ``spec`` asks (a service whose faults live elsewhere, such as a stored request, passes
    its own ``spec``)."""

    def wrap(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def faulty(ctx: Context, payload: Payload) -> Payload | None:
            await simulate(ctx, {"simulate": await spec(ctx, payload)})
            return await handler(ctx, payload)

        return faulty

    return wrap
