"""Rules across fields that a schema cannot say: names, subject roles, references.

Each check returns ``(path, message)`` pairs so the loader can place them in the file.
"""

from __future__ import annotations

from collections.abc import Iterator

from saga.definition.expressions import CONTEXT_ROOTS, template_references
from saga.definition.model import SagaDefinition, Step
from saga.definition.yaml_source import Path

Finding = tuple[Path, str]
SAGA_FIELDS = ("id", "name", "version")


def check_definition(definition: SagaDefinition) -> list[Finding]:
    """Every cross-field problem of a schema-valid definition."""
    return [
        *_unique_step_names(definition),
        *_subject_roles(definition),
        *_step_policies(definition),
        *_references(definition),
    ]


def _unique_step_names(definition: SagaDefinition) -> Iterator[Finding]:
    seen: dict[str, int] = {}
    for i, step in enumerate(definition.steps):
        if step.name in seen:
            yield ("steps", i, "name"), f"duplicate step name {step.name!r} (first used by steps[{seen[step.name]}])"
        else:
            seen[step.name] = i


def _listened(definition: SagaDefinition) -> Iterator[tuple[Path, str, str]]:
    """(path, subject, meaning) for every subject the engine consumes."""
    yield ("trigger", "event"), definition.trigger.event, "the trigger"
    for i, step in enumerate(definition.steps):
        for key in ("success", "failure"):
            for subject in getattr(step, key):
                yield ("steps", i, key), subject, f"{key} of step {step.name!r}"
        comp = step.compensate
        if comp is not None:
            for key in ("success", "failure"):
                for subject in getattr(comp, key) or ():
                    yield ("steps", i, "compensate", key), subject, (
                        f"compensation {key} of step {step.name!r}"
                    )


def _subject_roles(definition: SagaDefinition) -> Iterator[Finding]:
    meaning: dict[str, str] = {}
    for path, subject, role in _listened(definition):
        if subject in meaning:
            if meaning[subject].split(" of ")[-1:] == role.split(" of ")[-1:]:
                hint = " (a subject cannot mean both success and failure)"
            else:
                hint = ""
            yield path, f"subject {subject!r} already means {meaning[subject]}{hint}"
        else:
            meaning[subject] = role
    for i, step in enumerate(definition.steps):
        commands: list[tuple[Path, str]] = []
        if step.publish is not None:
            commands.append((("steps", i, "publish", "event"), step.publish.event))
        if step.compensate is not None:
            commands.append((("steps", i, "compensate", "publish", "event"), step.compensate.publish.event))
        for path, subject in commands:
            if subject in meaning:
                yield path, (
                    f"the engine publishes {subject!r} but also listens to it as {meaning[subject]}: "
                    "a command must differ from the events that answer it"
                )


def _step_policies(definition: SagaDefinition) -> Iterator[Finding]:
    for i, step in enumerate(definition.steps):
        if step.retry is not None:
            if not step.driven:
                yield ("steps", i, "retry"), (
                    "an observed step cannot be retried: the engine does not publish its command "
                    "(add 'publish' to make it driven)"
                )
            elif step.timeout is None and not step.retry.on_failure:
                yield ("steps", i, "retry"), (
                    "retry has nothing to react to: set the step's 'timeout' or 'on_failure: true'"
                )
        comp = step.compensate
        if comp is None:
            continue
        if comp.success is None:
            for key in ("timeout", "retry", "failure"):
                if getattr(comp, key) is not None:
                    yield ("steps", i, "compensate", key), (
                        f"'{key}' needs 'success': without a confirmation event the compensation "
                        "is fire-and-forget"
                    )
        elif comp.retry is not None and comp.timeout is None and not comp.retry.on_failure:
            yield ("steps", i, "compensate", "retry"), (
                "retry has nothing to react to: set the compensation's 'timeout' or 'on_failure: true'"
            )


def _references(definition: SagaDefinition) -> Iterator[Finding]:
    for i, step in enumerate(definition.steps):
        if step.publish is not None and step.publish.data is not None:
            yield from _check_refs(
                definition, step.publish.data, ("steps", i, "publish", "data"), visible=i
            )
        if step.compensate is not None and step.compensate.publish.data is not None:
            yield from _check_refs(
                definition, step.compensate.publish.data,
                ("steps", i, "compensate", "publish", "data"), visible=i + 1,
            )


def _check_refs(
    definition: SagaDefinition, template: object, path: Path, visible: int
) -> Iterator[Finding]:
    """``visible``: how many leading steps have results at the time the template is rendered."""
    names = {s.name: j for j, s in enumerate(definition.steps)}
    for chain in template_references(template):  # type: ignore[arg-type]
        root = chain[0]
        text = ".".join(chain)
        if root not in CONTEXT_ROOTS:
            yield path, f"{text!r}: unknown name {root!r}; expressions start with " + ", ".join(CONTEXT_ROOTS)
        elif root == "saga" and len(chain) > 1 and chain[1] not in SAGA_FIELDS:
            yield path, f"{text!r}: saga has only " + ", ".join(SAGA_FIELDS)
        elif root == "trigger" and len(chain) > 1:
            keep = definition.trigger.keep
            if keep is not None and chain[1] not in keep:
                yield path, f"{text!r}: the trigger keeps only {keep}"
        elif root == "steps" and len(chain) > 1:
            j = names.get(chain[1])
            if j is None:
                yield path, f"{text!r}: no step named {chain[1]!r}"
            elif j >= visible:
                yield path, (
                    f"{text!r}: step {chain[1]!r} has not completed when this payload is built "
                    "(a step can read only earlier steps' results)"
                )
            elif len(chain) > 2:
                yield from _check_kept(definition.steps[j], chain, path)


def _check_kept(step: Step, chain: tuple[str, ...], path: Path) -> Iterator[Finding]:
    if step.keep is not None and chain[2] not in step.keep:
        yield path, f"{'.'.join(chain)!r}: step {step.name!r} keeps only {step.keep}"
