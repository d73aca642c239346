"""The engine's side of the index: publish the entries a transition changes.

The publishes go through the connection's pipelined :class:`saga.nats.acks.Acks` (no request
round trip each) and are awaited together. A failed index write is logged, not raised: the
instance record is already written and is the truth, and ``saga reindex`` repairs the index.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from nats.aio.client import Client

from saga.core.state import InstanceState
from saga.definition.model import SagaDefinition
from saga.index.entry import IndexWrite, index_writes, search_values
from saga.nats.acks import Acks, PubAck, acks_for
from saga.protocol import HEADER_TTL

log = logging.getLogger("saga.index")


class IndexWriter:
    def __init__(self, nc: Client, finished_ttl: float = 0.0, acks: Acks | None = None) -> None:
        """``finished_ttl``: seconds a finished instance's entries are kept (0: for ever), the
        same as its record's."""
        self.acks = acks or acks_for(nc)
        self.finished_ttl = max(1, round(finished_ttl)) if finished_ttl else None

    async def write(
        self,
        definition: SagaDefinition,
        before: InstanceState | None,
        after: InstanceState,
        repair: bool = False,
    ) -> None:
        """Bring the index from ``before`` to ``after`` (``repair``: ``before`` is unknown)."""
        search_before = search_values(definition, before) if before is not None else {}
        writes = index_writes(
            before,
            after,
            search_before,
            search_values(definition, after),
            self.finished_ttl,
            repair,
        )
        if writes:
            await self.publish(writes)

    async def publish(self, writes: Sequence[IndexWrite]) -> None:
        sent: list[asyncio.Future[PubAck]] = []
        try:
            for write in writes:
                headers = {HEADER_TTL: str(write.ttl)} if write.ttl is not None else None
                sent.append(await self.acks.send(write.subject, write.data, headers))
        except Exception as exc:
            log.warning(
                "index not updated (%s: %s); `saga reindex` repairs it", type(exc).__name__, exc
            )
        results = await asyncio.gather(*sent, return_exceptions=True)
        failed = [r for r in results if isinstance(r, BaseException)]
        if failed:
            log.warning(
                "%d of %d index writes failed (%s); `saga reindex` repairs the index",
                len(failed),
                len(results),
                failed[0],
            )
