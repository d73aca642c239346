"""Span ids the engine can name before it writes the span, and write again after a crash.

A saga's step attempt span is written when the attempt ends, but the command that
starts the attempt must already carry its ``traceparent`` (so the participant's work
sits under it). Its id is therefore derived from what the record holds: the saga's
trace id, the saga id and the history index of the entry that opened the span. The
same record always gives the same ids, so an engine that re-emits spans after a crash
writes copies a viewer collapses into one.
"""

from __future__ import annotations

import contextvars
import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from opentelemetry.sdk.trace.id_generator import IdGenerator, RandomIdGenerator
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult

_FORCED: contextvars.ContextVar[tuple[int, int, bool] | None] = contextvars.ContextVar(
    "saga_forced_ids", default=None
)


def derived_span_id(trace_id: int, saga_id: str, index: int) -> int:
    """A non-zero 64-bit span id for the span opened by history entry ``index``."""
    digest = hashlib.blake2b(f"{trace_id:032x}/{saga_id}/{index}".encode(), digest_size=8)
    return int.from_bytes(digest.digest(), "big") or 1


class ForcedIds(IdGenerator):
    """The provider's generator, unless :func:`forced_ids` names the next ids."""

    def __init__(self, inner: IdGenerator | None = None) -> None:
        self.inner = inner or RandomIdGenerator()

    def generate_span_id(self) -> int:
        forced = _FORCED.get()
        return forced[1] if forced else self.inner.generate_span_id()

    def generate_trace_id(self) -> int:
        forced = _FORCED.get()
        return forced[0] if forced else self.inner.generate_trace_id()

    def is_trace_id_random(self) -> bool:
        return self.inner.is_trace_id_random()


class ForcedSampling(Sampler):
    """The provider's sampler, unless :func:`forced_ids` gives the decision.

    A saga's root is written when the saga ends, as a root span: its sampling decision was
    taken when the saga started (and is in every child's ``traceparent``), so it must not
    be taken again."""

    def __init__(self, inner: Sampler) -> None:
        self.inner = inner

    def should_sample(self, *args: Any, **kwargs: Any) -> SamplingResult:
        forced = _FORCED.get()
        if forced is None:
            return self.inner.should_sample(*args, **kwargs)
        return SamplingResult(Decision.RECORD_AND_SAMPLE if forced[2] else Decision.DROP)

    def get_description(self) -> str:
        return self.inner.get_description()


@contextmanager
def forced_ids(trace_id: int, span_id: int, sampled: bool = True) -> Iterator[None]:
    """Spans started inside get these ids (the trace id only matters for a root span) and
    this sampling decision."""
    token = _FORCED.set((trace_id, span_id, sampled))
    try:
        yield
    finally:
        _FORCED.reset(token)


def install(provider: object) -> None:
    """Make an SDK tracer provider honour :func:`forced_ids` (before ``get_tracer``)."""
    current = getattr(provider, "id_generator", None)
    if isinstance(current, IdGenerator) and not isinstance(current, ForcedIds):
        provider.id_generator = ForcedIds(current)  # type: ignore[attr-defined]
    sampler = getattr(provider, "sampler", None)
    if isinstance(sampler, Sampler) and not isinstance(sampler, ForcedSampling):
        provider.sampler = ForcedSampling(sampler)  # type: ignore[attr-defined]
