"""A Mermaid flowchart of a saga: forward steps, failure edges, compensations in reverse."""

from __future__ import annotations

from saga.definition.duration import format_duration
from saga.definition.model import SagaDefinition, Step


def _label(text: str) -> str:
    return text.replace('"', "'").replace("|", "/")


def _node(step: Step) -> str:
    detail = f"publishes {step.publish.event}" if step.publish is not None else "observed"
    if step.wait is not None:
        detail = f"waits {format_duration(step.wait)}"
    if step.when is not None:
        detail += f"<br/>when {_label(step.when)}"
    if step.publish is not None:
        return f'{step.name}["{step.name}<br/><small>{detail}</small>"]'
    return f'{step.name}(["{step.name}<br/><small>{detail}</small>"])'


def _success(step: Step) -> str:
    """The label of a step's success edge: its events, or a wait's time."""
    if step.wait is not None:
        return f"after {format_duration(step.wait)}"
    return _label(" / ".join(step.success))


def _outcomes(step: Step) -> list[str]:
    return [*step.failure, *(["timeout"] if step.timeout else [])]


def to_mermaid(definition: SagaDefinition) -> str:
    """Success edges go forward, following ``after``; failures lead to the undos.

    For a linear saga a failure jumps to the undo of the newest step before it; with
    parallel branches the undo order depends on when steps finished, so failures lead
    to one "compensate" node that undoes every completed step, newest first.
    """
    compensable = [s for s in definition.steps if s.compensate is not None]
    lines = ["flowchart TD", f'  start(("{_label(definition.trigger.event)}"))']
    lines += [f"  {_node(step)}" for step in definition.steps]
    lines += ['  completed(("completed"))', '  compensated(("compensated"))']
    for step in compensable:
        assert step.compensate is not None
        lines.append(
            f'  undo_{step.name}[/"undo {step.name}<br/><small>publishes '
            f'{step.compensate.publish.event}</small>"/]'
        )
    lines += _forward(definition)
    lines += _linear_failures(definition) if definition.linear else _parallel_failures(definition)
    lines.append("  classDef undo stroke-dasharray: 4 2")
    if compensable:
        lines.append("  class " + ",".join(f"undo_{s.name}" for s in compensable) + " undo")
    return "\n".join(lines) + "\n"


def _forward(definition: SagaDefinition) -> list[str]:
    lines = []
    needed: set[str] = set()
    for step in definition.steps:
        deps = definition.dependencies(step.name)
        needed.update(deps)
        if not deps:
            lines.append(f"  start --> {step.name}")
        for dep in deps:
            success = _success(definition.step(dep))
            lines.append(f"  {dep} -->|{success}| {step.name}")
    for step in definition.steps:
        if step.name not in needed:
            lines.append(f"  {step.name} -->|{_success(step)}| completed")
    return lines


def _linear_failures(definition: SagaDefinition) -> list[str]:
    compensable = [s for s in definition.steps if s.compensate is not None]
    lines = []
    for i, step in enumerate(definition.steps):
        done_before = [s for s in compensable if definition.index(s.name) < i]
        target = f"undo_{done_before[-1].name}" if done_before else "compensated"
        if _outcomes(step):
            lines.append(f"  {step.name} -.->|{_label(' / '.join(_outcomes(step)))}| {target}")
    for newer, older in zip(reversed(compensable), [*reversed(compensable)][1:], strict=False):
        lines.append(f"  undo_{newer.name} --> undo_{older.name}")
    if compensable:
        lines.append(f"  undo_{compensable[0].name} --> compensated")
    return lines


def _parallel_failures(definition: SagaDefinition) -> list[str]:
    lines = ['  compensate{{"undo completed steps, newest first"}}']
    for step in definition.steps:
        if _outcomes(step):
            lines.append(f"  {step.name} -.->|{_label(' / '.join(_outcomes(step)))}| compensate")
    for step in definition.steps:
        if step.compensate is not None:
            lines.append(f"  compensate -.-> undo_{step.name}")
    lines.append("  compensate --> compensated")
    return lines
