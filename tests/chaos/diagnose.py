"""Why a saga is still running at the end of a chaos run: everything the servers and the
logs hold about it, gathered once, for ``verdict.json``.

A saga that never ends is either stuck (a lost event or timer: an engine defect) or only
looks stuck (the harness read a lagging replica: the instances bucket allows direct gets,
which any replica answers, a restarted one from 90% caught up). So the record is read both
ways, and the timer slot, the fired timers not yet handled, the dead letters and the log
lines naming the saga are put next to it.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from saga.core.events import TimerKind
from saga.core.wakeup import SLOT
from saga.nats.dlq import LetterFilter, list_dead_letters
from saga.nats.topology import Topology, instance_key, timer_fire_subject, timer_schedule_subject
from saga.protocol import TIMER_FIRE_PREFIX, WORK_PREFIX, kv_prefix, kv_stream
from saga.store import InstanceRecord

HISTORY_TAIL = 12
LOG_LINES = 15


async def explain(
    nc: Client,
    saga: str,
    saga_id: str,
    log_dir: Path,
    seen_ended: str | None = None,
    topology: Topology | None = None,
) -> dict[str, Any]:
    """What is known of one unfinished saga (``seen_ended``: the status an earlier poll
    read for it, when it had read it ended)."""
    topology = topology or Topology()
    js = nc.jetstream(timeout=5)
    key = instance_key(saga, saga_id)
    found: dict[str, Any] = {"now": datetime.now(UTC).isoformat()}
    if seen_ended is not None:
        found["seen_ended_earlier"] = (
            f"{seen_ended}: an earlier poll read it ended, so this read is stale (a lagging "
            "replica answered the direct get), not the saga"
        )
    parts = await asyncio.gather(
        _records(nc, js, topology, key),
        _slot(js, topology, saga, saga_id),
        _fires(js, topology, saga, saga_id),
        _routed(js, topology, key),
        _letters(js, topology, saga_id),
        _leaders(js, topology),
        return_exceptions=True,
    )
    names = ("record", "slot", "fires", "routed", "dead_letters", "leaders")
    for name, part in zip(names, parts, strict=True):
        found[name] = f"{type(part).__name__}: {part}" if isinstance(part, BaseException) else part
    found["logs"] = _log_lines(log_dir, saga_id)
    return found


async def _records(
    nc: Client, js: JetStreamContext, topology: Topology, key: str
) -> dict[str, Any]:
    """The record from the stream leader, and what a direct get (any replica) answers."""
    bucket = topology.instances_bucket
    stream, subject = kv_stream(bucket), kv_prefix(bucket) + key
    found: dict[str, Any] = {}
    try:
        leader = await js.get_last_msg(stream, subject)  # the leader answers this API request
    except NotFoundError:
        found["leader"] = "no record"
    else:
        found["leader"] = _described(leader.data, leader.seq)
        found["leader_revision"] = leader.seq
    answers: list[int | None] = []
    for _ in range(6):  # a direct get goes to one replica of the queue group: ask a few
        try:
            direct = await js.get_last_msg(stream, subject, direct=True)
        except NotFoundError:
            answers.append(None)
        else:
            answers.append(direct.seq)
    found["direct_revisions"] = answers
    revision = found.get("leader_revision")
    if any(a != revision for a in answers):
        found["stale_direct_reads"] = (
            f"direct gets answered revisions {answers}, the leader {revision}: a replica lags"
        )
    return found


def _described(data: bytes | None, revision: int | None) -> dict[str, Any]:
    record = InstanceRecord.model_validate_json(data or b"{}")
    state = record.state
    steps = {
        name: f"{step.status.value} (attempt {step.attempt}), undo {step.compensation.value} "
        f"(attempt {step.compensation_attempt})"
        for name, step in state.steps.items()
    }
    return {
        "revision": revision,
        "status": state.status.value,
        "updated_at": state.updated_at.isoformat(),
        "steps": steps,
        "compensation_queue": state.compensation_queue,
        "timers": {k: v.isoformat() for k, v in (state.timers or {}).items()},
        "wake_at": state.wake_at.isoformat() if state.wake_at else None,
        "origin": record.origin,
        "outbox": record.outbox,
        "history_tail": [
            f"{h.at.time()} {h.event} {h.step or ''} {h.attempt or ''} {h.detail or ''}".strip()
            for h in state.history[-HISTORY_TAIL:]
        ],
    }


async def _slot(js: JetStreamContext, topology: Topology, saga: str, saga_id: str) -> Any:
    """The slot's stored message: a pending schedule, a cancel marker, or nothing (fired)."""
    assert SLOT.kind is TimerKind.WAKE
    subject = timer_schedule_subject(saga, saga_id, SLOT.key)
    try:
        msg = await js.get_last_msg(topology.timers_stream, subject)
    except NotFoundError:
        return "none (fired, or never set)"
    return {"seq": msg.seq, "time": str(msg.time), "headers": dict(msg.headers or {})}


async def _fires(js: JetStreamContext, topology: Topology, saga: str, saga_id: str) -> Any:
    """Fired timers of this saga still stored (not yet swept), and the timer consumer's
    position: a fire above the ack floor is not handled yet."""
    subject = timer_fire_subject(saga, saga_id, SLOT.key)
    info = await js.consumer_info(topology.timers_stream, topology.timer_consumer)
    found: dict[str, Any] = {
        "consumer": {
            "ack_floor": info.ack_floor.stream_seq if info.ack_floor else None,
            "delivered": info.delivered.stream_seq if info.delivered else None,
            "num_pending": info.num_pending,
            "num_ack_pending": info.num_ack_pending,
            "num_redelivered": info.num_redelivered,
        }
    }
    try:
        msg = await js.get_last_msg(topology.timers_stream, subject)
    except NotFoundError:
        found["last_fire"] = "none stored"
    else:
        found["last_fire"] = {"seq": msg.seq, "time": str(msg.time)}
    return found


async def _routed(js: JetStreamContext, topology: Topology, key: str) -> dict[str, Any]:
    """Partitioned engines: the fired timers of this saga routed to its partition's owner
    and not handled yet (the work stream keeps a message until it is acked), and every
    consumer's unacked and redelivered counts (an event stuck in an engine shows there)."""
    found: dict[str, Any] = {}
    try:
        info = await js.stream_info(
            topology.work_stream, subjects_filter=f"{WORK_PREFIX}.*.{TIMER_FIRE_PREFIX}.{key}.>"
        )
    except NotFoundError:
        found["timer_fires_waiting"] = "no work stream (not partitioned)"
    else:
        found["timer_fires_waiting"] = info.state.subjects or {}
    consumers = {}
    for stream in (topology.work_stream, topology.events_stream, topology.timers_stream):
        try:
            infos = await js.consumers_info(stream)
        except NotFoundError:
            continue
        for consumer in infos:
            consumers[f"{stream}/{consumer.name}"] = {
                "num_pending": consumer.num_pending,
                "num_ack_pending": consumer.num_ack_pending,
                "num_redelivered": consumer.num_redelivered,
                "num_waiting": consumer.num_waiting,
            }
    found["consumers"] = consumers
    return found


async def _letters(js: JetStreamContext, topology: Topology, saga_id: str) -> list[str]:
    letters = await list_dead_letters(js, topology, where=LetterFilter(saga_id=saga_id))
    return [f"{d.time} {d.code} {d.subject} ({d.origin}): {d.reason}" for d in letters]


async def _leaders(js: JetStreamContext, topology: Topology) -> dict[str, Any]:
    """Each stream's leader and its replicas' lag now."""
    found: dict[str, Any] = {}
    for stream in (
        topology.events_stream,
        topology.timers_stream,
        topology.work_stream,
        kv_stream(topology.instances_bucket),
    ):
        try:
            cluster = (await js.stream_info(stream)).cluster
        except Exception as exc:
            found[stream] = f"{type(exc).__name__}: {exc}"
            continue
        if cluster is None:
            found[stream] = "not clustered"
            continue
        found[stream] = {
            "leader": cluster.leader,
            "replicas": {
                r.name: {"current": r.current, "lag": r.lag} for r in cluster.replicas or []
            },
        }
    return found


def _log_lines(log_dir: Path, saga_id: str) -> dict[str, list[str]]:
    """The last lines naming the saga in each process's log."""
    found: dict[str, list[str]] = {}
    for log in sorted(log_dir.glob("*.log")):
        lines = [
            line[:400] for line in log.read_text(errors="replace").splitlines() if saga_id in line
        ]
        if lines:
            found[log.stem] = lines[-LOG_LINES:]
    return found


def summary(found: dict[str, Any]) -> str:
    """One line for the test's failure message (the rest is in ``verdict.json``)."""
    record = found.get("record")
    bits = [f"now {found.get('now')}"]
    if "seen_ended_earlier" in found:
        bits.append("seen ended earlier: " + str(found["seen_ended_earlier"]).split(":")[0])
    if isinstance(record, dict):
        leader = record.get("leader")
        if isinstance(leader, dict):
            bits.append(
                f"leader's record: {leader['status']} rev {leader['revision']}, "
                f"wake_at {leader['wake_at']}, timers {leader['timers']}"
            )
        else:
            bits.append(f"leader's record: {leader}")
        if "stale_direct_reads" in record:
            bits.append(str(record["stale_direct_reads"]))
    else:
        bits.append(f"record: {record}")
    slot = found.get("slot")
    bits.append(f"slot: {slot.get('headers') if isinstance(slot, dict) else slot}")
    if found.get("dead_letters"):
        bits.append(f"dead letters: {found['dead_letters']}")
    return "; ".join(bits)


def dumps(found: Any) -> str:
    return json.dumps(found, indent=2, default=str)
