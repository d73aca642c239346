"""Rules across fields that a schema cannot say: names, subject roles, references.

Each check returns ``(path, message)`` pairs so the loader can place them in the file.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from saga.definition.expressions import CONTEXT_ROOTS, template_leaves, template_references
from saga.definition.model import SagaDefinition, Step
from saga.definition.subjects import SENT, Use
from saga.definition.yaml_source import Path

Finding = tuple[Path, str]
SAGA_FIELDS = ("id", "name", "version")


def check_definition(definition: SagaDefinition) -> list[Finding]:
    """Every cross-field problem of a schema-valid definition."""
    return [
        *_unique_step_names(definition),
        *_subject_roles(definition),
        *_step_policies(definition),
        *_wait_steps(definition),
        *_dependencies(definition),
        *_references(definition),
        *_limits(definition),
    ]


def _unique_step_names(definition: SagaDefinition) -> Iterator[Finding]:
    seen: dict[str, int] = {}
    for i, step in enumerate(definition.steps):
        if step.name in seen:
            first = seen[step.name]
            yield ("steps", i, "name"), f"duplicate step name {step.name!r} (also steps[{first}])"
        else:
            seen[step.name] = i


def _subject_roles(definition: SagaDefinition) -> Iterator[Finding]:
    meaning: dict[str, Use] = {}
    for use in definition.subjects.declared:
        first = meaning.setdefault(use.subject, use)
        if first is use:
            continue
        if (first.step, first.compensating) == (use.step, use.compensating):
            why = "a subject cannot mean both success and failure"
        else:
            why = "the engine tells events apart by subject, so each may have one meaning"
        yield use.path, f"subject {use.subject!r} already means {first}: {why}"
    for use in definition.subjects.uses:
        if use.role in SENT and use.subject in meaning:
            yield (
                use.path,
                (
                    f"the engine publishes {use.subject!r} but also listens to it as "
                    f"{meaning[use.subject]}: a command must differ from the events that answer it"
                ),
            )


def _step_policies(definition: SagaDefinition) -> Iterator[Finding]:
    for i, step in enumerate(definition.steps):
        if step.max_in_flight is not None and step.saga is not None:
            yield (
                ("steps", i, "max_in_flight"),
                (
                    f"step {step.name!r} starts the child saga {step.saga!r}: limit it with "
                    f"'limits: {{max_running: {step.max_in_flight}}}' on {step.saga!r}"
                ),
            )
        elif step.max_in_flight is not None and not step.driven:
            yield (
                ("steps", i, "max_in_flight"),
                ("an observed step has no command to hold back: 'max_in_flight' needs 'publish'"),
            )
        if step.queue_timeout is not None and not step.driven:
            yield (
                ("steps", i, "queue_timeout"),
                (
                    "an observed step has no command to queue: 'queue_timeout' needs "
                    "'publish' (use 'timeout')"
                ),
            )
        if step.retry is not None:
            if not step.driven:
                yield (
                    ("steps", i, "retry"),
                    (
                        "an observed step cannot be retried: the engine does not publish its "
                        "command (add 'publish' to make it driven)"
                    ),
                )
            elif step.timeout is None and step.queue_timeout is None and not step.retry.on_failure:
                yield (
                    ("steps", i, "retry"),
                    (
                        "retry has nothing to react to: set the step's 'timeout' or "
                        "'on_failure: true'"
                    ),
                )
        yield from _compensation_policy(step, ("steps", i, "compensate"))


_NOT_IN_A_WAIT = (
    "publish",
    "success",
    "failure",
    "keep",
    "timeout",
    "queue_timeout",
    "retry",
    "compensate",
    "schema",
)


def _wait_steps(definition: SagaDefinition) -> Iterator[Finding]:
    """A step is a ``wait`` (ended by its timer) or waits for ``success``; not both."""
    for i, step in enumerate(definition.steps):
        if step.wait is None:
            if not step.success:
                yield ("steps", i, "success"), "missing required key 'success'"
            continue
        for key in _NOT_IN_A_WAIT:
            value = getattr(step, "payload_schema" if key == "schema" else key)
            if value is not None and value != ():
                yield (
                    ("steps", i, key),
                    f"a 'wait' step only sleeps and succeeds: it cannot have '{key}' "
                    "(make a separate step for it)",
                )


def _compensation_policy(step: Step, path: Path) -> Iterator[Finding]:
    comp = step.compensate
    if comp is None:
        return
    if comp.success is None:
        for key in ("timeout", "retry", "failure"):
            if getattr(comp, key) is not None:
                yield (
                    (*path, key),
                    (
                        f"'{key}' needs 'success': without a confirmation event the "
                        "compensation is fire-and-forget"
                    ),
                )
    elif comp.retry is not None and comp.timeout is None and not comp.retry.on_failure:
        yield (
            (*path, "retry"),
            (
                "retry has nothing to react to: set the compensation's 'timeout' or "
                "'on_failure: true'"
            ),
        )


def _dependencies(definition: SagaDefinition) -> Iterator[Finding]:
    """``after`` names earlier steps only: the list is a valid order, so there is no cycle."""
    position = {s.name: j for j, s in enumerate(definition.steps)}
    for i, step in enumerate(definition.steps):
        seen: set[str] = set()
        for k, name in enumerate(step.after or []):
            here: Path = ("steps", i, "after", k)
            if name in seen:
                yield here, f"{name!r} is listed twice"
            seen.add(name)
            j = position.get(name)
            if j is None:
                yield here, f"no step named {name!r} (steps: {_names(position)})"
            elif j == i:
                yield here, "a step cannot wait for itself"
            elif j > i:
                yield (
                    here,
                    (
                        f"step {name!r} is listed later: list the steps in an order they can run "
                        "(this also rules out cycles)"
                    ),
                )


def _references(definition: SagaDefinition) -> Iterator[Finding]:
    for i, step in enumerate(definition.steps):
        before = definition.ancestors(step.name)
        if step.publish is not None and step.publish.data is not None:
            here: Path = ("steps", i, "publish", "data")
            yield from _check_refs(definition, step.publish.data, here, before, step.name)
        if step.when is not None:
            yield from _check_refs(definition, step.when, ("steps", i, "when"), before, step.name)
        comp = step.compensate
        if comp is not None and comp.publish.data is not None:
            here = ("steps", i, "compensate", "publish", "data")
            yield from _check_refs(
                definition, comp.publish.data, here, before | {step.name}, step.name
            )
    every = set(definition.step_names())  # a search attribute is read at any status change
    for name, expression in (definition.search or {}).items():
        yield from _check_refs(definition, expression, ("search", name), every, "")


def _check_refs(
    definition: SagaDefinition,
    template: str | dict[str, object],
    path: Path,
    visible: set[str],
    reader: str,
) -> Iterator[Finding]:
    """``visible``: the steps that have surely ended when the template is rendered."""
    for leaf, expression in template_leaves(template):
        for chain in template_references(expression):
            message = _reference_problem(definition, chain, expression, visible, reader)
            if message is not None:
                yield (*path, *leaf), message


def _reference_problem(
    definition: SagaDefinition,
    chain: tuple[str, ...],
    expression: str,
    visible: set[str],
    reader: str,
) -> str | None:
    names = {s.name: j for j, s in enumerate(definition.steps)}
    root, text = chain[0], repr(".".join(chain))
    if root not in CONTEXT_ROOTS:
        return f"{text}: unknown name {root!r} " + _root_hint(definition, chain, expression)
    if root == "saga" and len(chain) > 1 and chain[1] not in SAGA_FIELDS:
        return f"{text}: saga has only " + ", ".join(SAGA_FIELDS)
    if root == "trigger" and len(chain) > 1:
        keep = definition.trigger.keep
        if keep is not None and chain[1] not in keep:
            return f"{text}: the trigger keeps only {_names(keep)}"
    if root == "steps" and len(chain) > 1:
        j = names.get(chain[1])
        if j is None:
            return f"{text}: no step named {chain[1]!r} (steps: {_names(names)})"
        if chain[1] not in visible:
            if j >= definition.index(reader):
                return (
                    f"{text}: step {chain[1]!r} has not completed when this payload is built "
                    "(a payload can read only earlier steps' results)"
                )
            return (
                f"{text}: step {chain[1]!r} may still be running when step {reader!r} starts; "
                f"add it to {reader!r}'s 'after' to read its results"
            )
        step = definition.steps[j]
        if len(chain) > 2 and step.keep is not None and chain[2] not in step.keep:
            return f"{text}: step {step.name!r} keeps only {_names(step.keep)}"
    return None


def _root_hint(definition: SagaDefinition, chain: tuple[str, ...], expression: str) -> str:
    *first, last = CONTEXT_ROOTS
    roots = f"(an expression starts with {', '.join(first)} or {last})"
    name = ".".join(chain)
    if any(s.name == chain[0] for s in definition.steps):
        return f"{roots}; did you mean 'steps.{name}'?"
    if len(chain) == 1 and expression.strip() == name:
        return f"{roots}; for the text {name} write \"'{name}'\" (YAML drops the outer quotes)"
    return f"{roots}; did you mean 'trigger.{name}'?"


def _names(names: Iterable[str]) -> str:
    return ", ".join(names) or "nothing"


def _limits(definition: SagaDefinition) -> Iterator[Finding]:
    limits = definition.limits
    if limits is not None and limits.max_running is None and limits.start_rate is None:
        yield ("limits",), "'limits' needs 'max_running', 'start_rate' or both"
