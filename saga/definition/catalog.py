"""Every loaded version of every saga: new instances use the newest, running ones their own."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from saga.definition.model import SagaDefinition


class Catalog:
    def __init__(self, definitions: Iterable[SagaDefinition]) -> None:
        self._versions: dict[str, dict[int, SagaDefinition]] = {}
        for definition in definitions:
            self._versions.setdefault(definition.name, {})[definition.version] = definition

    @classmethod
    def of(cls, definitions: Catalog | dict[str, SagaDefinition]) -> Catalog:
        return definitions if isinstance(definitions, Catalog) else cls(definitions.values())

    def latest(self, name: str) -> SagaDefinition | None:
        versions = self._versions.get(name)
        return versions[max(versions)] if versions else None

    def get(self, name: str, version: int) -> SagaDefinition | None:
        return self._versions.get(name, {}).get(version)

    def names(self) -> list[str]:
        return sorted(self._versions)

    def newest(self) -> dict[str, SagaDefinition]:
        return {name: d for name in self.names() if (d := self.latest(name)) is not None}

    def __iter__(self) -> Iterator[SagaDefinition]:
        for name in self.names():
            for version in sorted(self._versions[name]):
                yield self._versions[name][version]

    def __len__(self) -> int:
        return sum(len(v) for v in self._versions.values())


def version_warnings(catalog: Catalog) -> list[str]:
    """Subjects an older version consumes that the newest no longer does.

    Instances still running on the older version need those subjects: keep the older
    file loaded (and the services answering on them) until they have finished.
    """
    warnings = []
    for name in catalog.names():
        newest = catalog.latest(name)
        assert newest is not None
        current = {use.subject for use in newest.subjects.declared}
        for older in catalog:
            if older.name != name or older.version == newest.version:
                continue
            dropped = sorted({use.subject for use in older.subjects.declared} - current)
            if dropped:
                warnings.append(
                    f"saga {name!r}: version {newest.version} no longer consumes "
                    f"{', '.join(dropped)}; instances still running on version {older.version} "
                    f"need them: keep version {older.version} loaded until they finish"
                )
    return warnings
