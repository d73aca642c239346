"""A Mermaid flowchart of a saga: forward steps, failure edges, compensations in reverse."""

from __future__ import annotations

from saga.definition.model import SagaDefinition, Step


def _label(text: str) -> str:
    return text.replace('"', "'")


def _node(step: Step) -> str:
    if step.publish is not None:
        return f'{step.name}["{step.name}<br/><small>publishes {step.publish.event}</small>"]'
    return f'{step.name}(["{step.name}<br/><small>observed</small>"])'


def to_mermaid(definition: SagaDefinition) -> str:
    """Success edges go forward; a failure or timeout jumps to the undo of the newest completed step."""
    lines = ["flowchart TD", f'  start(("{_label(definition.trigger.event)}"))']
    lines += [f"  {_node(step)}" for step in definition.steps]
    lines.append('  completed(("completed"))')
    lines.append('  compensated(("compensated"))')
    compensable = [s for s in definition.steps if s.compensate is not None]
    for step in compensable:
        assert step.compensate is not None
        lines.append(
            f'  undo_{step.name}[/"undo {step.name}<br/><small>publishes '
            f'{step.compensate.publish.event}</small>"/]'
        )
    previous = "start"
    for i, step in enumerate(definition.steps):
        label = "" if i == 0 else f"|{_label(' / '.join(definition.steps[i - 1].success))}|"
        lines.append(f"  {previous} -->{label} {step.name}")
        done_before = [s for s in compensable if definition.index(s.name) < i]
        target = f"undo_{done_before[-1].name}" if done_before else "compensated"
        outcomes = [*step.failure, *(["timeout"] if step.timeout else [])]
        if outcomes:
            lines.append(f"  {step.name} -.->|{_label(' / '.join(outcomes))}| {target}")
        previous = step.name
    last = definition.steps[-1]
    lines.append(f"  {last.name} -->|{_label(' / '.join(last.success))}| completed")
    for newer, older in zip(reversed(compensable), [*reversed(compensable)][1:], strict=False):
        lines.append(f"  undo_{newer.name} --> undo_{older.name}")
    if compensable:
        lines.append(f"  undo_{compensable[0].name} --> compensated")
    lines.append("  classDef undo stroke-dasharray: 4 2")
    if compensable:
        lines.append("  class " + ",".join(f"undo_{s.name}" for s in compensable) + " undo")
    return "\n".join(lines) + "\n"
