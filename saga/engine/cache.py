"""The records this engine wrote, with their revision: the next event of an instance needs
no read. Bounded, least recently used first out; a stale entry only costs a revision
conflict and a reload, never a wrong decision."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

from saga.store import Stored


class InstanceCache:
    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[str, Stored] = OrderedDict()

    def get(self, key: str) -> Stored | None:
        found = self._items.get(key)
        if found is not None:
            self._items.move_to_end(key)
        return found

    def put(self, key: str, stored: Stored) -> None:
        self._items[key] = stored
        self._items.move_to_end(key)
        while len(self._items) > self.size:
            self._items.popitem(last=False)

    def drop(self, key: str) -> None:
        self._items.pop(key, None)

    def drop_where(self, unwanted: Callable[[str], bool]) -> None:
        for key in [k for k in self._items if unwanted(k)]:
            del self._items[key]
