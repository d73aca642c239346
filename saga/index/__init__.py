"""The instance index: list and find sagas among millions without reading them all.

Entries live in a JetStream stream (``SAGA_INDEX``), written by the engine with each status
change (:mod:`saga.index.writer`), read with direct gets (:mod:`saga.index.query`), rebuilt
from the instances bucket by ``saga reindex`` (:mod:`saga.index.rebuild`).
"""

from saga.index.entry import SagaSummary
from saga.index.query import MAX_LIMIT, SagaIndex, SagaPage, SagaQuery

__all__ = ["MAX_LIMIT", "SagaIndex", "SagaPage", "SagaQuery", "SagaSummary"]
