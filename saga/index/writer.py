"""The engine's side of the index: publish the entries a transition changes.

The publishes go through the connection's pipelined :class:`saga.nats.acks.Acks` (no request
round trip each) and are awaited together: the engine sends them with a transition's commands
and awaits both before it acks the event. A failed index write is logged, not raised: the
instance record is already written and is the truth, and ``saga reindex`` repairs the index.
"""

from __future__ import annotations

import logging

from nats.aio.client import Client

from saga.core.state import InstanceState
from saga.definition.model import SagaDefinition
from saga.index.entry import index_writes, search_values
from saga.nats.acks import AckGroup, Acks, acks_for
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
        await self.settled(await self.send(definition, before, after, repair))

    async def send(
        self,
        definition: SagaDefinition,
        before: InstanceState | None,
        after: InstanceState,
        repair: bool = False,
    ) -> AckGroup | None:
        """:meth:`write`'s publishes, sent now; their acks to await with :meth:`settled`
        (None: nothing to write). Most transitions change nothing the index shows."""
        search_before = search_values(definition, before) if before is not None else {}
        writes = index_writes(
            before,
            after,
            search_before,
            search_values(definition, after),
            self.finished_ttl,
            repair,
        )
        if not writes:
            return None
        group = AckGroup()  # one future for the writes
        try:
            for write in writes:
                headers = {HEADER_TTL: str(write.ttl)} if write.ttl is not None else None
                await self.acks.send_in(group, write.subject, write.data, headers)
        except Exception as exc:
            log.warning(
                "index not updated (%s: %s); `saga reindex` repairs it", type(exc).__name__, exc
            )
        return group

    async def settled(self, group: AckGroup | None) -> None:
        """Wait for the acks of :meth:`send`; a failure is logged, not raised."""
        if group is None:
            return
        try:
            await group.wait()
        except Exception as exc:
            log.warning(
                "index writes failed (%s: %s); `saga reindex` repairs the index",
                type(exc).__name__,
                exc,
            )
