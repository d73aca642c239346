"""The DSL v1 as frozen pydantic models: what a definition file may say, and nothing else.

Unknown keys are refused (``extra="forbid"``) so a typo is an error, not a silent default.
Cross-field rules (names, subjects, references) live in :mod:`saga.definition.checks`.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from functools import cached_property
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    WithJsonSchema,
    model_validator,
)

from saga.definition.duration import Duration
from saga.definition.expressions import TemplateError, compile_template, template_problems
from saga.definition.limits import Limits
from saga.definition.schedule import every_problem, parse_cron, server_pattern
from saga.definition.subjects import SubjectIndex
from saga.protocol import (
    CHILD_COMPLETED,
    CHILD_FAILED,
    CHILD_UNDO_FAILED,
    CHILD_UNDONE,
    HEADER_SAGA_ID,
    child_outcome_subject,
    child_start_subject,
    child_undo_subject,
)

SUBJECT_PATTERN = r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$"
STEP_NAME_PATTERN = r"^[a-z][a-z0-9_]*$"
SAGA_NAME_PATTERN = r"^[a-z][a-z0-9_-]*$"
FIELD_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
DEFAULT_ID_HEADER = HEADER_SAGA_ID

Subject = Annotated[
    str,
    Field(
        pattern=SUBJECT_PATTERN,
        description="A literal NATS subject: dot-separated tokens of letters, digits, '-' "
        "and '_'; no wildcards.",
    ),
]


def _as_list(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


def _validate_template(value: Any) -> Any:
    problems = template_problems(value)
    if problems:
        raise TemplateError(problems)
    return value


Subjects = Annotated[
    tuple[Subject, ...],
    BeforeValidator(_as_list),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "pattern": SUBJECT_PATTERN},
                {"type": "array", "items": {"type": "string", "pattern": SUBJECT_PATTERN}},
            ],
            "description": "One subject or a list of subjects.",
        }
    ),
]

_EXPRESSION_SCHEMA = {"type": "string", "description": "A JMESPath expression over the context."}
_TEMPLATE_SCHEMA: dict[str, Any] = {
    "anyOf": [
        _EXPRESSION_SCHEMA,
        {
            "type": "object",
            "additionalProperties": {"anyOf": [_EXPRESSION_SCHEMA, {"type": "object"}]},
            "description": "A payload whose leaves are JMESPath expressions.",
        },
    ]
}

Template = Annotated[
    Any,
    AfterValidator(_validate_template),
    WithJsonSchema(_TEMPLATE_SCHEMA),
]


PayloadSchema = Annotated[
    dict[str, Any] | str | None,
    WithJsonSchema(
        {
            "anyOf": [{"type": "object"}, {"type": "string"}],
            "description": "A JSON Schema (a mapping), or the path of a JSON or YAML file "
            "holding one, relative to the definition file.",
        }
    ),
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


class SagaIdSource(_Model):
    """Where an event carries the saga id: a header, or a JMESPath over the JSON payload."""

    header: str | None = None
    """Header name holding the id (default ``Saga-Id``)."""
    field: Annotated[str, AfterValidator(_validate_template)] | None = None
    """JMESPath over the trigger payload, e.g. ``order_id``."""

    @model_validator(mode="after")
    def _one_source(self) -> SagaIdSource:
        if self.header is not None and self.field is not None:
            raise ValueError("give either 'header' or 'field', not both")
        return self

    @property
    def header_name(self) -> str:
        return self.header or DEFAULT_ID_HEADER


class Trigger(_Model):
    """The event that starts an instance."""

    event: Subject
    """Subject whose messages start a new instance."""
    id: SagaIdSource = SagaIdSource()
    """Where the saga id comes from; a fresh id is generated when the message has none."""
    keep: list[Annotated[str, Field(pattern=FIELD_NAME_PATTERN)]] | None = None
    """Payload fields kept in the context as ``trigger.<field>``; all fields when absent."""
    payload_schema: PayloadSchema = Field(None, alias="schema")
    """A JSON Schema the trigger's payload must satisfy (inline, or a file path relative to
    the definition file); a trigger that breaks it is dead-lettered (``schema-violation``)."""


class RetryPolicy(_Model):
    """How a driven step or a compensation is re-published when it gets no (good) answer."""

    attempts: int = Field(3, ge=1, le=100)
    """Total attempts, the first one included."""
    backoff: Duration = timedelta(seconds=1)
    """Wait before the second attempt."""
    multiplier: float = Field(2.0, ge=1.0, le=10.0)
    """Each further wait is the previous one times this."""
    max_backoff: Duration = timedelta(seconds=30)
    """Upper bound of any wait."""
    on_failure: bool = False
    """Also retry when a failure event arrives (by default only timeouts are retried)."""

    def delay(self, failed_attempt: int) -> timedelta:
        """The wait after attempt ``failed_attempt`` (1-based) before the next one."""
        wait = self.backoff
        for _ in range(failed_attempt - 1):
            if wait >= self.max_backoff:
                break
            try:
                wait = wait * self.multiplier
            except OverflowError:
                return self.max_backoff
        return min(wait, self.max_backoff)


class Publish(_Model):
    """An event the engine publishes: its subject and a payload template."""

    event: Subject
    """Subject the command is published on."""
    data: Template | None = None
    """A JMESPath expression, or a mapping whose leaves are expressions; ``{}`` when absent."""

    def payload(self, context: dict[str, Any]) -> Any:
        """``data`` rendered over ``context`` (:func:`render`), ``{}`` without ``data``.

        The template is compiled once and kept beside the fields, checked against ``data``
        (``model_copy(update=...)`` copies what was kept with the rest)."""
        kept: tuple[Any, Callable[[dict[str, Any]], Any]] | None = self.__dict__.get("compiled")
        if kept is None or kept[0] is not self.data:
            kept = (self.data, _empty if self.data is None else compile_template(self.data))
            self.__dict__["compiled"] = kept
        return kept[1](context)


class Compensation(_Model):
    """How to undo a step that succeeded."""

    publish: Publish
    """The undo command, published when a later step fails."""
    success: Subjects | None = None
    """Event(s) confirming the undo; without it the compensation is fire-and-forget."""
    failure: Subjects | None = None
    """Event(s) saying the undo failed (retried, then the instance is parked)."""
    timeout: Duration | None = None
    """How long to wait for the confirmation (needs ``success``)."""
    retry: RetryPolicy | None = None
    """Re-publish the undo after a timeout or failure (needs ``success``)."""


class Step(_Model):
    """One step: driven (``publish`` given) or observed (a service starts it on its own)."""

    name: Annotated[str, Field(pattern=STEP_NAME_PATTERN)]
    """Unique name, usable in expressions as ``steps.<name>``."""
    publish: Publish | None = None
    """The command the engine publishes to start the step; absent for an observed step."""
    success: Subjects = ()
    """Event(s) meaning the step succeeded; required unless the step is a ``wait``."""
    failure: Subjects = ()
    """Event(s) meaning the step failed."""
    wait: Duration | None = None
    """A durable sleep: the step starts, waits this long (an engine timer, kept across
    restarts) and succeeds. A wait step has no events, command, timeout or compensation."""
    keep: list[Annotated[str, Field(pattern=FIELD_NAME_PATTERN)]] | None = None
    """Success payload fields kept as ``steps.<name>.<field>``; all fields when absent."""
    payload_schema: PayloadSchema = Field(None, alias="schema")
    """A JSON Schema the step's success payload must satisfy (inline, or a file path relative
    to the definition file). A success that breaks it is dead-lettered and counts as the
    step failing with reason ``schema-violation: ...`` (retried if ``on_failure``, else the
    saga compensates)."""
    timeout: Duration | None = None
    """How long to wait for success or failure after the step starts (per attempt). With
    ``queue_timeout``, counted from when the participant reports it started the work."""
    queue_timeout: Duration | None = None
    """Driven steps: how long the command may wait at the participant before the
    participant reports it started (``saga.started.<saga>.<step>``); then ``timeout``
    runs. A step not started in time times out (and is retried if its policy says so).
    Without it, ``timeout`` counts from when the command was sent, queueing included."""
    retry: RetryPolicy | None = None
    """Retry policy of a driven step."""
    max_in_flight: Annotated[int, Field(ge=1, le=100_000)] | None = None
    """Driven steps: at most this many of the step's commands outstanding at once, over every
    instance and engine replica. A command beyond it waits, in order, in the events stream;
    the step's ``timeout`` (or ``queue_timeout``) starts when it is sent."""
    compensate: Compensation | None = None
    """How to undo this step when a later one fails."""
    after: list[Annotated[str, Field(pattern=STEP_NAME_PATTERN)]] | None = None
    """Steps that must succeed (or be skipped) before this one starts; by default the
    step listed just before. ``[]`` starts it with the saga. Several steps after one
    step run in parallel (fan-out); a step after several waits for all (fan-in)."""
    when: Annotated[str, AfterValidator(_validate_template)] | None = None
    """A JMESPath condition over the context; when false the step is skipped (and
    never compensated)."""
    saga: Annotated[str, Field(pattern=SAGA_NAME_PATTERN)] | None = None
    """A child saga: the step starts this saga (id ``<parent id>-<step>``) with ``data`` as
    its trigger payload and succeeds when it completes (success payload: the child's kept
    context, ``{id, saga, trigger, steps}``) or fails when it compensates. Compensating the
    parent undoes a completed child (its compensations run). The loader fills in the step's
    ``publish``, ``success``, ``failure`` and ``compensate``; give none of them."""
    data: Template | None = None
    """A child saga step's trigger payload, a template like ``publish.data``."""

    @property
    def driven(self) -> bool:
        return self.publish is not None


class Schedule(_Model):
    """Start an instance at every tick, by the server's message schedules (one instance per
    tick whatever the number of engine replicas; its id is ``<saga>-<tick>``)."""

    cron: str | None = None
    """A cron pattern in UTC: 5 fields (``0 2 * * *``: at 02:00), 6 with seconds first, or
    ``@hourly``, ``@daily``, ``@weekly``, ``@monthly``, ``@yearly``."""
    every: Duration | None = None
    """Or an interval (``1h``, ``15m``); at least 1s, whole seconds."""
    data: dict[str, Any] = Field(default_factory=dict)
    """The trigger payload of every instance it starts (checked against the trigger's schema)."""

    @model_validator(mode="after")
    def _one_timing(self) -> Schedule:
        if (self.cron is None) == (self.every is None):
            raise ValueError("give either 'cron' or 'every'")
        if self.cron is not None:
            parse_cron(self.cron)  # ValueError says what is wrong
        if self.every is not None and (problem := every_problem(self.every)):
            raise ValueError(problem)
        return self

    @property
    def pattern(self) -> str:
        """The ``Nats-Schedule`` header the server reads."""
        return server_pattern(self.cron, self.every)


class SagaDefinition(_Model):
    """One saga: its trigger and its ordered steps."""

    name: Annotated[str, Field(pattern=SAGA_NAME_PATTERN)]
    """Unique among the sagas one engine runs; keys its instances."""
    version: int = Field(1, ge=1)
    """Recorded on every instance."""
    description: str = ""
    """Free text for people."""
    trigger: Trigger
    """The event that starts an instance."""
    deadline: Duration | None = None
    """The forward path must complete within this, or the saga is compensated."""
    schedule: Schedule | None = None
    """Start an instance on a timetable (cron or interval), besides the trigger event."""
    limits: Limits | None = None
    """At most ``max_running`` instances at once, started at most ``start_rate``: triggers
    beyond a limit wait in the events stream, in order (see :mod:`saga.engine.admission`)."""
    steps: list[Step] = Field(min_length=1)
    """The steps, in an order they can run in: each after the one before it unless its
    ``after`` says otherwise."""
    branch_failure: Literal["wait", "abandon"] = "wait"
    """When a step fails while parallel steps are in flight: ``wait`` for their outcomes
    before compensating (so a step that succeeds is undone too), or ``abandon`` them at
    once (a late success still queues its undo)."""
    status_events: Literal["all", "final", "none"] = "all"
    """Lifecycle events announced on ``saga.status.<saga>.<status>``: ``all`` (completed,
    compensated, parked, reopened), ``final`` (completed, compensated) or ``none``; a stored
    message each, so leave out what nobody consumes (``saga.core.announce``)."""
    search: (
        dict[
            Annotated[str, Field(pattern=FIELD_NAME_PATTERN, max_length=64)],
            Annotated[str, AfterValidator(_validate_template)],
        ]
        | None
    ) = None
    """Search attributes: a name and a JMESPath over the context (``trigger.customer_id``),
    evaluated at each status change and indexed, so ``saga list --where name=value`` finds
    the instances by a business key."""

    @model_validator(mode="before")
    @classmethod
    def _child_steps(cls, data: Any) -> Any:
        """Spell out each ``saga:`` step as the driven step it is (see :attr:`Step.saga`)."""
        if not isinstance(data, dict) or not isinstance(data.get("steps"), list):
            return data
        parent = data.get("name")
        steps = [
            _child_step(str(parent), s) if isinstance(s, dict) and s.get("saga") else s
            for s in data["steps"]
        ]
        return {**data, "steps": steps}

    @cached_property
    def subjects(self) -> SubjectIndex:
        """What each subject means to this saga, worked out once (a definition is frozen)."""
        return SubjectIndex.of(self)

    @property
    def by_name(self) -> dict[str, Step]:
        """The steps by name (the first of a name), worked out once: the core looks steps
        up at every event."""
        return self._step_table().by_name

    @property
    def waits_for(self) -> dict[str, tuple[str, ...]]:
        """:meth:`dependencies` of every step, worked out once."""
        return self._step_table().waits_for

    def _step_table(self) -> _StepTable:
        # Kept beside the fields, as a cached_property would be, but checked against the
        # steps: ``model_copy(update={"steps": ...})`` copies what was kept with the rest.
        table: _StepTable | None = self.__dict__.get("steps_table")
        if table is None or table.steps is not self.steps:
            table = _StepTable(self.steps)
            self.__dict__["steps_table"] = table
        return table

    def step(self, name: str) -> Step:
        return self.by_name[name]

    def dependencies(self, name: str) -> list[str]:
        """The steps ``name`` waits for: its ``after``, else the step listed before it."""
        deps = self.waits_for.get(name)
        if deps is None:
            raise ValueError(f"{name!r} is not a step of {self.name!r}")
        return list(deps)

    def ancestors(self, name: str) -> set[str]:
        """Every step that must have ended before ``name`` starts (transitively)."""
        found: set[str] = set()
        todo = self.dependencies(name)
        while todo:
            step = todo.pop()
            if step not in found and step in self.by_name:
                found.add(step)
                todo.extend(self.dependencies(step))
        return found

    def step_names(self) -> list[str]:
        return [s.name for s in self.steps]

    @property
    def linear(self) -> bool:
        """True when no step says ``after``: the steps run one after another."""
        return all(s.after is None for s in self.steps)

    def index(self, name: str) -> int:
        return [s.name for s in self.steps].index(name)


class _StepTable:
    """What a definition's steps say about one another, worked out once."""

    __slots__ = ("by_name", "steps", "waits_for")

    def __init__(self, steps: list[Step]) -> None:
        self.steps = steps
        self.by_name = {step.name: step for step in reversed(steps)}  # the first of a name
        self.waits_for: dict[str, tuple[str, ...]] = {}
        for i, step in enumerate(steps):
            if step.name in self.waits_for:
                continue  # a duplicate name (the checks refuse it): the first one counts
            if step.after is not None:
                self.waits_for[step.name] = tuple(step.after)
            else:
                self.waits_for[step.name] = (steps[i - 1].name,) if i > 0 else ()


def _empty(context: dict[str, Any]) -> dict[str, Any]:
    return {}


_NOT_WITH_SAGA = ("publish", "success", "failure", "compensate", "wait", "retry", "queue_timeout")


def _child_step(parent: str, step: dict[str, Any]) -> dict[str, Any]:
    """A ``saga:`` step as a driven step: its command starts the child, the child's outcome
    answers it, and its undo asks a completed child to compensate."""
    given = [k for k in _NOT_WITH_SAGA if k in step]
    if given:
        raise ValueError(
            f"step {step.get('name')!r} starts the child saga {step['saga']!r}: the engine "
            f"supplies its {', '.join(given)} (a child saga retries and compensates itself)"
        )
    name, child = str(step.get("name")), str(step["saga"])

    def outcome(what: str) -> str:
        return child_outcome_subject(parent, name, what)

    return {
        **step,
        "publish": {"event": child_start_subject(child), "data": step.get("data")},
        "success": [outcome(CHILD_COMPLETED)],
        "failure": [outcome(CHILD_FAILED)],
        "compensate": {
            "publish": {"event": child_undo_subject(child)},
            "success": [outcome(CHILD_UNDONE)],
            "failure": [outcome(CHILD_UNDO_FAILED)],
        },
    }


def json_schema() -> dict[str, Any]:
    """The JSON Schema of a definition file, for editors (yaml-language-server) and tools."""
    schema = SagaDefinition.model_json_schema(mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "Saga definition (DSL v1)"
    return schema
