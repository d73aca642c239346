"""Durable instance state: the record kept per instance and the stores that keep it."""

from saga.store.base import InstanceRecord, InstanceStore, Stored
from saga.store.kv import KvInstanceStore
from saga.store.memory import MemoryInstanceStore

__all__ = ["InstanceRecord", "InstanceStore", "KvInstanceStore", "MemoryInstanceStore", "Stored"]
