"""Definitions live-reload: a changed folder is validated, then added to the running engine.

A broken file is refused (every problem logged) and the engine keeps what it had.
Versions are only ever added: an instance keeps the version it started with, so a
version whose file disappears stays loaded until the engine restarts (and if
unfinished instances use it, that is logged as an error and shown in ``/readyz``:
a restart refuses to run without it), and a version whose content changes without
a new version number is refused.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

from saga.definition import Catalog, load_catalog
from saga.definition.loader import definition_files
from saga.engine.versions import Stranded, versions_of
from saga.errors import DefinitionError, SagaError

log = logging.getLogger("saga.reload")


def fingerprint(folder: Path) -> tuple[tuple[str, int, int], ...]:
    """Names, sizes and modification times: cheap to poll, changes with every edit."""
    found = []
    for file in definition_files([folder]):
        try:
            stat = file.stat()
        except OSError:
            continue
        found.append((file.name, stat.st_size, stat.st_mtime_ns))
    return tuple(sorted(found))


def merge(current: Catalog, loaded: Catalog) -> tuple[Catalog, list[str]]:
    """``current`` plus the new versions of ``loaded``; refusals for changed versions."""
    refused = []
    added = []
    for definition in loaded:
        known = current.get(definition.name, definition.version)
        if known is None:
            added.append(definition)
        elif known != definition:
            refused.append(
                f"{definition.name} version {definition.version} changed while instances may "
                "run on it: give the new content a new version number"
            )
    return Catalog([*current, *added]), refused


class DefinitionsWatcher:
    """Polls ``folder``; ``catalog()`` is what runs now, ``reload(catalog)`` runs a new one
    (raising :class:`SagaError` when it cannot), ``removed(kept)`` finds the unfinished
    instances of loaded versions not in ``kept`` (:meth:`saga.engine.Engine.removed_versions`)."""

    def __init__(
        self,
        folder: Path,
        catalog: Callable[[], Catalog],
        reload: Callable[[Catalog], Awaitable[None]],
        removed: Callable[[set[tuple[str, int]]], Awaitable[list[Stranded]]],
        interval: float = 2.0,
    ) -> None:
        self.catalog = catalog
        self.reload = reload
        self.removed = removed
        self.folder = folder
        self.interval = interval
        self._seen = fingerprint(folder)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="saga-reload")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            now = await asyncio.to_thread(fingerprint, self.folder)
            if now != self._seen:
                self._seen = now
                await self.check()

    async def check(self) -> bool:
        """Load the folder again; True when something new was added to the engine."""
        try:
            loaded = await asyncio.to_thread(load_catalog, [self.folder])
        except DefinitionError as exc:
            for problem in exc.problems:
                log.error("definitions not reloaded: %s", problem)
            return False
        await self.check_removed(loaded)
        current = self.catalog()
        merged, refused = merge(current, loaded)
        for reason in refused:
            log.error("definitions not reloaded: %s", reason)
        if refused or len(merged) == len(current):
            return False
        try:
            await self.reload(merged)
        except SagaError as exc:
            log.error("definitions not reloaded: %s", exc)
            return False
        log.info("definitions reloaded: %s", ", ".join(f"{d.name} v{d.version}" for d in merged))
        return True

    async def check_removed(self, loaded: Catalog) -> None:
        """A version whose file is gone stays loaded here; if unfinished instances use it,
        say so loudly (log and ``/readyz``): the next start would refuse to run without it."""
        try:
            found = await self.removed(versions_of(loaded))
        except Exception as exc:  # a reload must never stop the engine
            log.error("could not check the instances of removed versions: %s", exc)
            return
        for stranded in found:
            log.error(
                "definitions: %s; its file is gone from %s. The version stays loaded in "
                "this engine, but a restart refuses to run without it: put the file back",
                stranded.describe(),
                self.folder,
            )
