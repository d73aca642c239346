"""Partitioned mode: consume exactly the partitions the live replicas deal to this one.

Every ``heartbeat`` the replica beats (see :mod:`saga.nats.membership`), deals the
partitions over the live members (:func:`saga.engine.partitions.assign`), releases what it
lost and starts consuming what it gained. The pinned consumers make sure that, while
replicas disagree during a change, only one of them receives a partition's events.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import ConnectionClosedError

from saga.engine.partitions import assign
from saga.engine.settings import EngineSettings
from saga.nats.membership import Membership
from saga.nats.pinned import PinnedPull, unpin

log = logging.getLogger("saga.engine")

Fetch = Callable[[], Awaitable[list[Msg]]]
Consume = Callable[[Fetch, asyncio.Event], Coroutine[Any, Any, None]]


@dataclass
class _Owned:
    puller: PinnedPull
    stop: asyncio.Event
    task: asyncio.Task[None]


class Ownership:
    def __init__(
        self,
        nc: Client,
        settings: EngineSettings,
        membership: Membership,
        consume: Consume,
        released: Callable[[int], None],
    ) -> None:
        """``consume(fetch, stop)`` handles a partition's messages until ``stop`` is set;
        ``released(partition)`` is told when a partition goes to another replica."""
        self.nc = nc
        self.settings = settings
        self.membership = membership
        self._consume = consume
        self._released = released
        self._owned: dict[int, _Owned] = {}

    @property
    def owned(self) -> list[int]:
        return sorted(self._owned)

    def owns(self, partition: int) -> bool:
        return partition in self._owned

    async def keep_balanced(self, stopping: asyncio.Event) -> None:
        """Beat and rebalance now, then every ``heartbeat``; a failed beat changes nothing
        (a fresh replicated bucket may not answer yet, a server may be restarting)."""
        while not stopping.is_set():
            try:
                await self.rebalance()
            except ConnectionClosedError:
                return
            except Exception as exc:
                log.warning("heartbeat failed (%s); keeping partitions %s", exc, self.owned)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), self.settings.heartbeat)

    async def rebalance(self) -> None:
        """Beat, then own exactly the partitions the live member list deals to us."""
        members = await self.membership.beat(self.owned)
        wanted = set(assign(members, self.settings.partitions)[self.membership.member_id])
        lost, gained = set(self._owned) - wanted, wanted - set(self._owned)
        await asyncio.gather(*(self._release(partition) for partition in sorted(lost)))
        for partition in sorted(gained):
            self._own(partition)
        if lost or gained:
            log.info(
                "replica %s owns partitions %s of %d (%d replicas)",
                self.membership.member_id,
                self.owned,
                self.settings.partitions,
                len(members),
            )

    async def leave(self) -> None:
        """Hand every partition over at once, then stop counting as a member."""
        await asyncio.gather(*(self._release(partition) for partition in self.owned))
        await self.membership.leave()

    def _own(self, partition: int) -> None:
        topology = self.settings.topology
        puller = PinnedPull(self.nc, topology.work_stream, topology.partition_consumer(partition))
        stop = asyncio.Event()
        batch, wait = self.settings.fetch_batch, self.settings.fetch_wait
        task = asyncio.create_task(
            self._consume(lambda: puller.fetch(batch, wait), stop),
            name=f"saga-partition-{partition}",
        )
        self._owned[partition] = _Owned(puller, stop, task)

    async def _release(self, partition: int) -> None:
        """Finish what we fetched, then unpin, so the next owner starts at once."""
        owned = self._owned.pop(partition)
        owned.stop.set()
        await asyncio.gather(owned.task, return_exceptions=True)
        topology = self.settings.topology
        with contextlib.suppress(Exception):
            await unpin(self.nc, topology.work_stream, topology.partition_consumer(partition))
        with contextlib.suppress(Exception):
            await owned.puller.close()
        self._released(partition)
