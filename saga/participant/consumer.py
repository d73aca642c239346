"""The durable consumer that every copy of one app shares, and the rule for its filter.

Copies of a service (replicas, two versions during a rolling deploy) share one durable
named after the app. No copy may take subjects away from another behind its back, so:

- no durable yet: create it with our subjects;
- its filter covers our subjects: use it as it is, never narrowing it. Subjects it has
  beyond ours belong to other copies (an older or newer version): we leave them to them
  (nak with delay, see the dispatcher);
- our subjects are its filter plus new ones: widen it (a rolling deploy adding a handler;
  older copies leave the new subjects to us);
- anything else (a subject each side lacks, or no filter at all): refuse to start. Two
  different services under one name, or a deploy that adds and removes handlers at once.

Delivery settings (backoff, ``max_deliver``, ``max_ack_pending``) of an existing durable
are kept, and followed: the first copy's settings stand until changed on purpose.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from nats.aio.client import Client
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from saga import jsonwire
from saga.errors import ProvisioningError
from saga.participant.settings import ParticipantSettings
from saga.protocol import JS_API_PREFIX

log = logging.getLogger("saga.participant")

_ALREADY_EXISTS = 10148
"""JetStream error: a consumer of that name exists with another configuration."""


@dataclass(frozen=True)
class FilterPlan:
    """What to do with the durable's filter at start."""

    filter: tuple[str, ...]
    """The filter in force once started (sorted)."""
    action: str
    """``create``, ``keep`` or ``widen``."""
    others: tuple[str, ...] = ()
    """Filter entries no handler of ours matches: other copies' subjects."""


def plan_filter(
    name: str, stream: str, existing: Sequence[str] | None, ours: Sequence[str]
) -> FilterPlan:
    """The filter rule (see the module docstring); ``existing`` None: no durable yet.

    Raises :class:`ProvisioningError` naming both sides when the durable belongs to
    something else."""
    wanted = tuple(sorted(set(ours)))
    if existing is None:
        return FilterPlan(wanted, "create")
    have = tuple(sorted(set(existing)))
    if not have:
        raise ProvisioningError(
            f"consumer {name} on {stream} has no filter (it would receive every subject); "
            f"this app handles {', '.join(wanted)}: give the app another name, or set the "
            "consumer's filter"
        )
    if all(any(matches(pattern, subject) for pattern in have) for subject in wanted):
        others = tuple(p for p in have if p not in wanted)
        return FilterPlan(have, "keep", others)
    if set(have) <= set(wanted):
        return FilterPlan(wanted, "widen")
    missing = [s for s in have if s not in wanted]
    new = [s for s in wanted if not any(matches(p, s) for p in have)]
    raise ProvisioningError(
        f"consumer {name} on {stream} filters {', '.join(have)}, used by another app named "
        f"{name!r} (or another version of this one) that handles {', '.join(missing)}, which "
        f"this app does not; this app also handles {', '.join(new)}. Changing the filter "
        "would take messages from the other one. Give this app its own name, or deploy in "
        "two steps (first add handlers, then remove them once no copy needs them)"
    )


def matches(pattern: str, subject: str) -> bool:
    """NATS subject matching: ``*`` is one token, a final ``>`` one or more."""
    want, got = pattern.split("."), subject.split(".")
    for i, token in enumerate(want):
        if token == ">":
            return len(got) > i
        if i >= len(got) or (token != "*" and token != got[i]):
            return False
    return len(want) == len(got)


@dataclass(frozen=True)
class Bound:
    """The durable as we use it: its filter and the delivery settings it really has."""

    plan: FilterPlan
    settings: ParticipantSettings
    """Ours, with the durable's backoff and ``max_deliver`` (its redeliveries are ours)."""


async def bind_consumer(
    nc: Client, stream: str, name: str, subjects: Sequence[str], settings: ParticipantSettings
) -> Bound:
    """Create, keep or widen the app's durable by the filter rule; never narrow it."""
    js = nc.jetstream()
    for _ in range(5):  # a copy starting at the same moment may create it first
        try:
            info = await js.consumer_info(stream, name)
        except NotFoundError:
            plan = plan_filter(name, stream, None, subjects)
            config = _config(name, plan.filter, settings)
            if await _create(nc, stream, config):
                return Bound(plan, settings)
            continue
        have = info.config
        plan = plan_filter(name, stream, _filter_of(have), subjects)
        if plan.action == "widen":
            await _update(nc, stream, _with_filter(have, plan.filter))
            log.warning(
                "%s: consumer filter widened to %s (copies that lack the new handlers leave "
                "those messages to this one)",
                name,
                ", ".join(plan.filter),
            )
        elif plan.others:
            log.warning(
                "%s: consumer also filters %s, which this copy has no handler for: those "
                "messages are left to copies that have one",
                name,
                ", ".join(plan.others),
            )
        _warn_differences(name, have, settings)
        return Bound(plan, _following(settings, have))
    raise ProvisioningError(f"consumer {name} on {stream} kept changing while we bound to it")


def _filter_of(config: ConsumerConfig) -> list[str]:
    if config.filter_subjects:
        return list(config.filter_subjects)
    return [config.filter_subject] if config.filter_subject else []


def _with_filter(config: ConsumerConfig, subjects: Sequence[str]) -> ConsumerConfig:
    single = len(subjects) == 1
    return dataclasses.replace(
        config,
        filter_subject=subjects[0] if single else None,
        filter_subjects=None if single else list(subjects),
    )


def _config(name: str, subjects: Sequence[str], settings: ParticipantSettings) -> ConsumerConfig:
    stream = settings.stream
    return _with_filter(
        ConsumerConfig(
            durable_name=name,
            deliver_policy=DeliverPolicy.ALL,
            ack_policy=AckPolicy.EXPLICIT,
            backoff=list(stream.ack_wait_backoff),
            max_deliver=stream.max_deliver,
            max_ack_pending=stream.max_ack_pending,
            num_replicas=stream.replicas if stream.replicas > 1 else None,
        ),
        subjects,
    )


def _following(settings: ParticipantSettings, have: ConsumerConfig) -> ParticipantSettings:
    """Our settings with the durable's redelivery: the server redelivers by those."""
    stream = settings.stream
    backoff = tuple(have.backoff or ()) or stream.ack_wait_backoff
    max_deliver = have.max_deliver if have.max_deliver is not None else stream.max_deliver
    if (backoff, max_deliver) == (stream.ack_wait_backoff, stream.max_deliver):
        return settings
    followed = dataclasses.replace(stream, ack_wait_backoff=backoff, max_deliver=max_deliver)
    return dataclasses.replace(settings, stream=followed)


def _warn_differences(name: str, have: ConsumerConfig, settings: ParticipantSettings) -> None:
    wanted = _config(name, _filter_of(have), settings)
    differ = [
        f"{field}={getattr(have, field)!r} (ours {getattr(wanted, field)!r})"
        for field in ("backoff", "max_deliver", "max_ack_pending")
        if getattr(have, field) != getattr(wanted, field)
    ]
    if differ:
        log.warning(
            "%s: the consumer exists with other settings, kept as they are: %s",
            name,
            "; ".join(differ),
        )


async def _create(nc: Client, stream: str, config: ConsumerConfig) -> bool:
    """Create the durable; False when another copy created it first."""
    error = await _consumer_request(nc, stream, config, "create")
    if error is None:
        return True
    if error.get("err_code") == _ALREADY_EXISTS:
        return False
    raise ProvisioningError(
        f"cannot create consumer {config.durable_name} on {stream}: {error.get('description')}"
    )


async def _update(nc: Client, stream: str, config: ConsumerConfig) -> None:
    error = await _consumer_request(nc, stream, config, "update")
    if error is not None:
        raise ProvisioningError(
            f"cannot update consumer {config.durable_name} on {stream}: {error.get('description')}"
        )


async def _consumer_request(
    nc: Client, stream: str, config: ConsumerConfig, action: str
) -> dict[str, Any] | None:
    """``$JS.API.CONSUMER.CREATE`` with an ``action`` (nats-py's ``add_consumer`` sends none,
    which silently overwrites a durable made by another copy); the error, if any."""
    body = {"stream_name": stream, "config": config.as_dict(), "action": action}
    subject = f"{JS_API_PREFIX}CONSUMER.CREATE.{stream}.{config.durable_name}"
    reply = await nc.request(subject, jsonwire.dumps(body), timeout=5.0)
    answer: dict[str, Any] = json.loads(reply.data)
    error: dict[str, Any] | None = answer.get("error")
    return error
