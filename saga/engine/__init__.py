"""The engine service: consumes saga events from JetStream and drives the pure core."""

from saga.engine.service import Engine
from saga.engine.settings import EngineSettings

__all__ = ["Engine", "EngineSettings"]
