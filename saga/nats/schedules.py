"""Scheduled sagas on the server's message schedules (nats-server 2.12+).

A scheduled saga has one message on ``saga.schedule.<saga>`` in the events stream: its
payload is the trigger payload, its ``Nats-Schedule`` the pattern, its target the trigger
subject. The server fires it once per tick into the stream, so one engine replica takes
each tick (the engine's durable consumer), and the tick becomes the saga id
(:func:`saga.definition.saga_id.scheduled_saga_id`). ``Nats-TTL: never`` keeps the
schedule past the stream's ``max_age``.

The engine provisions schedules at start and on every reload: a schedule that is already
there as wanted is left alone (publishing it again would restart an ``every`` interval), a
changed one is replaced, and one whose saga no longer has a schedule is purged.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from saga import jsonwire
from saga.definition.model import SagaDefinition
from saga.definition.schedule import parse_cron
from saga.errors import ProvisioningError
from saga.nats.topology import Topology
from saga.protocol import (
    HEADER_SAGA_NAME,
    HEADER_SAGA_SCHEDULE,
    HEADER_SCHEDULE,
    HEADER_SCHEDULE_TARGET,
    HEADER_TTL,
    SCHEDULE_PREFIX,
    TTL_NEVER,
    schedule_subject,
)

log = logging.getLogger("saga.engine")


@dataclass(frozen=True)
class ScheduleEntry:
    """One schedule as the server holds it."""

    saga: str
    pattern: str
    target: str
    data: dict[str, Any]
    since: datetime
    """When this schedule was (last) provisioned."""

    def next_fire(self, now: datetime) -> datetime | None:
        """The next tick after ``now`` (for ``every``: counted from :attr:`since`)."""
        if self.pattern.startswith("@every "):
            step = timedelta(seconds=int(self.pattern.removeprefix("@every ").removesuffix("s")))
            ticks = max(0, int((now - self.since) / step)) + 1
            return self.since.replace(microsecond=0) + ticks * step
        try:
            return parse_cron(self.pattern).next_after(now)
        except ValueError:
            return None


def _wanted_headers(definition: SagaDefinition) -> dict[str, str]:
    assert definition.schedule is not None
    pattern = definition.schedule.pattern
    return {
        HEADER_SCHEDULE: pattern,
        HEADER_SCHEDULE_TARGET: definition.trigger.event,
        HEADER_SAGA_SCHEDULE: pattern,
        HEADER_SAGA_NAME: definition.name,
        HEADER_TTL: TTL_NEVER,
    }


async def provision_schedules(
    js: JetStreamContext, topology: Topology, definitions: Iterable[SagaDefinition]
) -> list[str]:
    """Make the server hold exactly the schedules of ``definitions`` (the newest version of
    each saga); returns the sagas whose schedule was published or removed."""
    wanted = {d.name: d for d in definitions if d.schedule is not None}
    have = await list_schedules(js, topology)
    if wanted:
        await _allow_schedules(js, topology)
    changed = []
    for name, definition in sorted(wanted.items()):
        assert definition.schedule is not None
        headers = _wanted_headers(definition)
        current = have.get(name)
        if (
            current is not None
            and current.pattern == headers[HEADER_SCHEDULE]
            and current.target == headers[HEADER_SCHEDULE_TARGET]
            and current.data == definition.schedule.data
        ):
            continue
        ack = await js.publish(
            schedule_subject(name),
            jsonwire.dumps(definition.schedule.data),
            stream=topology.events_stream,
            headers=headers,
        )
        log.info(
            "schedule of %s: %s on %s (seq %s)",
            name,
            headers[HEADER_SCHEDULE],
            definition.trigger.event,
            ack.seq,
        )
        changed.append(name)
    for name in sorted(set(have) - set(wanted)):
        await js.purge_stream(topology.events_stream, subject=schedule_subject(name))
        log.info("schedule of %s removed: its definition has none", name)
        changed.append(name)
    return changed


async def _allow_schedules(js: JetStreamContext, topology: Topology) -> None:
    """The events stream captures ``saga.schedule.>`` and allows schedules and TTLs."""
    config = (await js.stream_info(topology.events_stream)).config
    subject = f"{SCHEDULE_PREFIX}.>"
    if subject in (config.subjects or []) and config.allow_msg_schedules and config.allow_msg_ttl:
        return
    updated = copy.copy(config)
    updated.subjects = [*(s for s in config.subjects or [] if s != subject), subject]
    updated.allow_msg_schedules = True
    updated.allow_msg_ttl = True
    try:
        await js.update_stream(updated)
    except NatsError as exc:
        raise ProvisioningError(
            f"stream {topology.events_stream} cannot hold schedules "
            f"({getattr(exc, 'description', None) or type(exc).__name__}): "
            "scheduled sagas need nats-server 2.12+"
        ) from exc
    log.info("stream %s now holds saga schedules", topology.events_stream)


async def list_schedules(js: JetStreamContext, topology: Topology) -> dict[str, ScheduleEntry]:
    """The schedules the server holds, by saga name."""
    try:
        info = await js.stream_info(topology.events_stream, subjects_filter=f"{SCHEDULE_PREFIX}.>")
    except NotFoundError:
        return {}
    found: dict[str, ScheduleEntry] = {}
    for subject in sorted(info.state.subjects or {}):
        try:
            msg = await js.get_last_msg(topology.events_stream, subject)
        except NotFoundError:
            continue
        headers = msg.headers or {}
        if HEADER_SCHEDULE not in headers:
            continue
        name = subject.removeprefix(f"{SCHEDULE_PREFIX}.")
        data = jsonwire.loads(msg.data) if msg.data else {}
        since = msg.time if isinstance(msg.time, datetime) else datetime.now(UTC)
        found[name] = ScheduleEntry(
            name,
            headers[HEADER_SCHEDULE],
            headers.get(HEADER_SCHEDULE_TARGET, ""),
            data if isinstance(data, dict) else {},
            since,
        )
    return found
