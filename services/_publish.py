"""Publishing saga triggers the way a front-end service would."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable
from typing import Any

from nats.js import JetStreamContext

from saga.protocol import HEADER_MSG_ID, HEADER_SAGA_ID
from saga.telemetry import Telemetry
from saga.telemetry.spans import sending


async def publish_triggers(
    js: JetStreamContext, subject: str, id_field: str, payloads: Iterable[dict[str, Any]]
) -> list[str]:
    """Publish each payload with ``Saga-Id`` = its id field; a resend is deduplicated.

    Many publishes are kept in flight (``publish_async``), then every ack is awaited.
    """
    ids: list[str] = []
    futures: list[asyncio.Future[Any]] = []
    telemetry = Telemetry.current()  # traced when this process configured OpenTelemetry
    for payload in payloads:
        saga_id = str(payload[id_field])
        headers = {HEADER_SAGA_ID: saga_id, HEADER_MSG_ID: f"{subject}:{saga_id}"}
        with sending(
            telemetry, subject, headers, saga_id=saga_id, message_id=headers[HEADER_MSG_ID]
        ):
            futures.append(
                await js.publish_async(subject, json.dumps(payload).encode(), headers=headers)
            )
        ids.append(saga_id)
    await asyncio.gather(*futures)
    return ids
