"""One timer slot per instance: the earliest due time of all its armed timers.

:func:`saga.core.decide` speaks of timers one by one (a step's timeout, its queue
timeout, a retry's backoff, an undo's timeout or retry, the deadline, a wait), and
each used to be a message of its own: scheduled, then cancelled when the step
answered, so a three-step saga wrote eight timer messages. :func:`decide_slotted`
keeps those timers in the state instead (``InstanceState.timers``, each with its
kind, so the record, traces and ``saga trace`` still tell them apart) and turns the
timer commands into at most one per transition, for the instance's slot
(``TimerKind.WAKE``): set when the earliest armed timer is earlier than the slot,
cancelled when nothing is armed. When an earlier timer is cancelled the slot stays
where it is: it then fires early, finds nothing due and is set again, which costs a
message only for sagas slower than their timeouts' gaps.

A fired slot is matched against the state: every armed timer due by ``now`` is
acted on, in due order, exactly as if it had fired alone; a fire that finds nothing
due (an early or stale fire: a slot replaced after it fired, a replay) changes
nothing, and re-arms the slot when the fire was the one it waited for. Pure, like the
rest of the core.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from saga.core.commands import CancelTimer, Command, ScheduleTimer
from saga.core.decide import Decision, changed_decision, decide, decide_armed
from saga.core.events import Event, OperatorRedrive, SagaTriggered, Timer, TimerFired, TimerKind
from saga.core.state import InstanceState
from saga.definition.model import SagaDefinition

SLOT = Timer(TimerKind.WAKE)
"""The slot: one schedule subject per instance, so setting it again replaces it."""
SLACK = timedelta(seconds=1)
"""A slot fire this close before the slot's time is taken as that slot's fire (the
server's clock may run ahead of the engine's): the slot is then set again, never lost."""


def decide_slotted(
    definition: SagaDefinition, state: InstanceState | None, event: Event, now: datetime
) -> Decision:
    """:func:`decide`, with the instance's timers behind one slot (see the module)."""
    if isinstance(event, TimerFired) and event.timer.kind is TimerKind.WAKE:
        return wake(definition, state, now)
    if state is None:
        if not isinstance(event, SagaTriggered):
            return decide(definition, state, event, now)
        armed: dict[str, datetime] = {}
        decision = decide_armed(definition, state, event, now, armed)
        if not decision.changed or decision.state is None:
            return decision
        return _slotted(decision, decision.commands, armed, None, fired=False)
    if state.timers is None:  # an instance from before the slot: timers one by one
        return decide(definition, state, event, now)
    armed = dict(state.timers)
    if isinstance(event, TimerFired):
        armed.pop(event.timer.key, None)
    if isinstance(event, OperatorRedrive):  # its timer commands are netted first: folded after
        decision = decide(definition, state, event, now)
        if not decision.changed or decision.state is None:
            return decision
        return settle(decision, armed, state.wake_at, fired=False)
    # The timers set in and removed from ``armed`` directly, as settle would fold them.
    decision = decide_armed(definition, state, event, now, armed)
    if not decision.changed or decision.state is None:
        return decision
    return _slotted(decision, decision.commands, armed, state.wake_at, fired=False)


def wake(definition: SagaDefinition, state: InstanceState | None, now: datetime) -> Decision:
    """The slot fired: act on every armed timer due by ``now``, earliest first."""
    if state is None:
        return Decision(None, note="no such instance")
    if state.status.terminal or not state.timers:
        return Decision(state, note="woken with no timer armed")
    fired = state.wake_at is not None and now >= state.wake_at - SLACK
    due = sorted((at, key) for key, at in state.timers.items() if at <= now)
    if not due:
        if not fired:
            return Decision(state, note="woken early: nothing due")
        # The slot we waited for fired before its timers are due by our clock: set again.
        at = min(state.timers.values())
        return Decision(
            state.model_copy(update={"wake_at": at}), [ScheduleTimer(SLOT, at)], changed=True
        )
    armed = dict(state.timers)
    for _, key in due:
        armed.pop(key)
    current, commands, changed = state, list[Command](), False
    for _, key in due:
        trial = dict(armed)  # a fire that changes nothing changes no timer either
        decision = decide_armed(definition, current, TimerFired(Timer.from_key(key)), now, trial)
        if decision.error is not None:
            return Decision(state, error=decision.error)
        if decision.changed and decision.state is not None:
            current, changed, armed = decision.state, True, trial
            commands += decision.commands
    if not changed:  # only stale timers were due: forget them
        current = current.model_copy(update={"updated_at": now})
    return _slotted(changed_decision(current, commands), commands, armed, state.wake_at, fired)


def settle(
    decision: Decision, armed: dict[str, datetime], wake_at: datetime | None, fired: bool
) -> Decision:
    """Fold the decision's timer commands into ``armed`` and replace them with what the
    slot needs (``fired``: the slot is no longer set on the server)."""
    assert decision.state is not None
    kept: list[Command] = []
    for command in decision.commands:
        if isinstance(command, ScheduleTimer) and command.timer.kind is not TimerKind.WAKE:
            armed[command.timer.key] = command.fire_at
        elif isinstance(command, CancelTimer) and command.timer.kind is not TimerKind.WAKE:
            armed.pop(command.timer.key, None)
        else:
            kept.append(command)
    return _slotted(decision, kept, armed, wake_at, fired)


def _slotted(
    decision: Decision,
    kept: list[Command],
    armed: dict[str, datetime],
    wake_at: datetime | None,
    fired: bool,
) -> Decision:
    """:func:`settle` once the timer commands are folded into ``armed`` (``kept``: the
    other commands, to which the slot's is added)."""
    assert decision.state is not None
    if decision.state.status.terminal:
        armed = {}  # a finished instance ignores every timer
    pending = None if fired else wake_at
    earliest = min(armed.values()) if armed else None
    if earliest is None:
        if pending is not None:
            kept.append(CancelTimer(SLOT))
        pending = None
    elif pending is None or earliest < pending:
        kept.append(ScheduleTimer(SLOT, earliest))
        pending = earliest
    # decision.state is this transition's own (decide's working copy, or a copy made in
    # wake), never the caller's: set in place rather than copied once more
    state = decision.state
    state.timers, state.wake_at = armed, pending
    if kept is decision.commands:  # the transition's own list, now with the slot's command
        return decision
    return Decision(state, kept, decision.changed, decision.note, decision.error)
