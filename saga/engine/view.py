"""What the admin API and the console use of a running engine: values and callables read
when called, so neither holds (nor imports) :class:`saga.engine.Engine`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from nats.aio.client import Client
from nats.js import JetStreamContext

from saga.definition.catalog import Catalog
from saga.engine.admission import GateCount
from saga.engine.operator import Act
from saga.engine.settings import EngineSettings
from saga.engine.versions import Stranded
from saga.store import InstanceStore


@dataclass(frozen=True)
class Health:
    """A snapshot for ``/readyz``."""

    connected: bool
    ready: bool
    """Streams, bucket and consumers provisioned, consuming."""
    replica: str
    stranded: tuple[Stranded, ...] = ()
    """Unfinished instances on versions whose file is gone (kept loaded until a restart)."""
    partitions: int = 0
    owned: tuple[int, ...] = ()
    limits: tuple[GateCount, ...] = ()
    """Waiting and running counts of the sagas with ``limits``."""


@dataclass(frozen=True)
class EngineView:
    nc: Client
    js: JetStreamContext
    settings: EngineSettings
    act: Act
    health: Callable[[], Health]
    catalog_now: Callable[[], Catalog] = field(repr=False)
    store_now: Callable[[], InstanceStore | None] = field(repr=False)

    @property
    def catalog(self) -> Catalog:
        """Every loaded version, as of now (a reload adds versions)."""
        return self.catalog_now()

    @property
    def store(self) -> InstanceStore | None:
        """None until the engine has started."""
        return self.store_now()
