"""The one error tree of the package.

    SagaError
    ├── DefinitionError        a definition file is invalid (carries every problem found)
    ├── ConfigError            a setting is missing or invalid
    ├── ConnectionFailed       NATS could not be reached (or refused our credentials)
    ├── ServerNotFoundError    no nats-server binary to embed
    ├── ProvisioningError      an existing stream/consumer/bucket conflicts with ours
    └── StoreError
        └── RevisionConflict   the instance changed since it was read (CAS lost)

The pure core never raises: failures there are results. These errors belong to
the adapters around it.
"""

from __future__ import annotations

from dataclasses import dataclass


class SagaError(Exception):
    """Base class of every error raised on purpose by this package."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong in a definition file, located like a compiler would."""

    file: str
    line: int
    """1-based line of the offending field (0 when unknown)."""
    column: int
    """1-based column of the offending field (0 when unknown)."""
    path: str
    """Dotted field path inside the document, e.g. ``steps[1].retry.attempts``."""
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:{self.column}" if self.line else self.file
        field = f" {self.path}:" if self.path else ""
        return f"{where}:{field} {self.message}"


class DefinitionError(SagaError):
    """A definition file is invalid; ``problems`` lists everything found, not just the first."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class ConfigError(SagaError):
    """A setting is missing or invalid."""


class ConnectionFailed(SagaError):
    """NATS could not be reached, or refused our credentials."""


class ServerNotFoundError(SagaError):
    """No nats-server binary is available to start an embedded server."""


class ProvisioningError(SagaError):
    """An existing stream, consumer or bucket conflicts with the configuration we need."""


class StoreError(SagaError):
    """The instance store failed."""


class RevisionConflict(StoreError):
    """Another writer changed the instance since we read it."""
