"""Carry out the core's commands on NATS: publish events, set and cancel timers, announce outcomes."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from nats.aio.client import Client

from saga import jsonwire
from saga.core.commands import (
    CancelTimer,
    Command,
    Parked,
    PublishEvent,
    ReleaseSlot,
    Reopened,
    ScheduleTimer,
    net_commands,
)
from saga.core.state import InstanceState
from saga.engine.admission import ACK
from saga.nats.acks import AckGroup, acks_for
from saga.nats.timers import BrokerTimers
from saga.protocol import (
    HEADER_MSG_ID,
    HEADER_REPLAY,
    HEADER_SAGA_ID,
    HEADER_SAGA_NAME,
    status_subject,
)
from saga.telemetry import Telemetry, inject
from saga.telemetry.engine_spans import carry

log = logging.getLogger("saga.engine")


def encode(data: Any) -> bytes:
    """Commands and lifecycle events as RFC 8259 JSON: ``ValueError`` on NaN or infinity."""
    return jsonwire.dumps(data, default=str)


def replayed(commands: Sequence[Command]) -> list[Command]:
    """An outbox sent again: its commands say so (``Saga-Replay``), since a participant
    skips the reply-ledger read on a first delivery of a first attempt otherwise."""
    return [
        replace(c, headers={**c.headers, HEADER_REPLAY: "1"}) if isinstance(c, PublishEvent) else c
        for c in commands
    ]


def status_event(
    state: InstanceState, status: str, reason: str | None
) -> tuple[str, dict[str, Any], dict[str, str]]:
    """The lifecycle event ``saga.status.<saga>.<status>``: subject, payload, headers."""
    payload = {
        "saga_id": state.saga_id,
        "saga_name": state.saga_name,
        "status": status,
        "reason": reason,
    }
    headers = {
        HEADER_SAGA_ID: state.saga_id,
        HEADER_SAGA_NAME: state.saga_name,
        HEADER_MSG_ID: f"{state.saga_name}:{state.saga_id}:status:{status}:{len(state.history)}",
    }
    return status_subject(state.saga_name, status), payload, headers


class CommandSender:
    def __init__(
        self, nc: Client, timers: BrokerTimers, telemetry: Telemetry | None = None
    ) -> None:
        self.timers = timers
        self.telemetry = telemetry or Telemetry.disabled()
        self.acks = acks_for(nc)
        self.nc = nc

    async def send(
        self,
        state: InstanceState,
        commands: Sequence[Command],
        saga_trace: Mapping[str, str] | None = None,
    ) -> Awaitable[Any] | None:
        """Send in the decided order, pipelined; returns the future of every ack (None: no
        commands).

        Publishes go out one after the other on the connection (so the stream keeps
        the decided order) without waiting for each ack; any failure, or an ack missing
        after :attr:`Acks.timeout`, fails the future, and the caller naks the message so the
        outbox is sent again (``Nats-Msg-Id`` dedupes what did arrive).
        """
        if not commands:
            return None
        group = AckGroup()  # one future for the transition's publishes
        others: list[Awaitable[Any]] = []  # purges (timers without per-message TTLs)
        for command in net_commands(commands):
            other = await self._send(state, command, saga_trace, group)
            if other is not None:
                others.append(other)
        if not others:
            return group.close()
        return _all(group.close(), others)

    async def _send(
        self,
        state: InstanceState,
        command: Command,
        saga_trace: Mapping[str, str] | None,
        group: AckGroup,
    ) -> Awaitable[Any] | None:
        name, sid = state.saga_name, state.saga_id
        if isinstance(command, PublishEvent):
            headers = {**command.headers, HEADER_MSG_ID: command.msg_id}
            await self._publish(
                command.subject, encode(command.data), headers, state, saga_trace, group
            )
            return None
        if isinstance(command, ScheduleTimer):
            context: dict[str, str] = {}
            if self.telemetry.enabled:
                inject(context)  # the saga's (see engine_spans.in_saga): a fired timer links to it
            return await self.timers.schedule(
                name, sid, command.timer, command.fire_at, context, group
            )
        if isinstance(command, CancelTimer):
            return await self.timers.cancel(name, sid, command.timer, group)
        if isinstance(command, Parked):
            log.warning("parked at the compensation of %s: %s", command.step, command.reason)
            await self._announce(state, "parked", command.reason, saga_trace, group)
        elif isinstance(command, Reopened):
            await self._announce(state, "reopened", command.reason, saga_trace, group)
        elif isinstance(command, ReleaseSlot):  # ack the admitted command (engine.admission)
            await self.nc.publish(command.slot, ACK)
        else:
            await self._announce(state, command.status, state.failure_reason, saga_trace, group)
        return None

    async def _announce(
        self,
        state: InstanceState,
        status: str,
        reason: str | None,
        saga_trace: Mapping[str, str] | None,
        group: AckGroup,
    ) -> None:
        subject, payload, headers = status_event(state, status, reason)
        await self._publish(subject, encode(payload), headers, state, saga_trace, group)

    async def _publish(
        self,
        subject: str,
        data: bytes,
        headers: dict[str, str],
        state: InstanceState,
        saga_trace: Mapping[str, str] | None,
        group: AckGroup,
    ) -> None:
        """Send now, with the saga's trace context; its ack counts towards ``group``."""
        if saga_trace:
            carry(headers, state, saga_trace)
        await self.acks.send_in(group, subject, data, headers)


async def _all(group: Awaitable[None], others: list[Awaitable[Any]]) -> None:
    """The group's acks, then the others' (all awaited; the first failure raised)."""
    await group
    results = await asyncio.gather(*others, return_exceptions=True)
    failed = next((r for r in results if isinstance(r, BaseException)), None)
    if failed is not None:
        raise failed
