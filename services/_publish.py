"""Publishing saga triggers the way a front-end service would."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from nats.js import JetStreamContext

from saga import jsonwire
from saga.definition.saga_id import id_from_payload
from saga.nats.connection import URL_ENV, connect, settings_from_env
from saga.protocol import HEADER_MSG_ID, HEADER_SAGA_ID, HEADER_SAGA_NAME, trigger_message_id
from saga.telemetry import Telemetry
from saga.telemetry.spans import sending


async def publish_triggers(
    js: JetStreamContext,
    saga: str,
    subject: str,
    id_field: str,
    payloads: Iterable[dict[str, Any]],
) -> list[str]:
    """Publish each payload with ``Saga-Id`` = its id field (a JMESPath, as in a definition's
    ``trigger.id.field``) and the ``Nats-Msg-Id`` every trigger carries, so a resend is
    deduplicated.

    Many publishes are kept in flight (``publish_async``), then every ack is awaited.
    """
    ids: list[str] = []
    futures: list[asyncio.Future[Any]] = []
    telemetry = Telemetry.current()  # traced when this process configured OpenTelemetry
    for payload in payloads:
        saga_id = id_from_payload(id_field, payload)
        if saga_id is None:
            raise ValueError(f"trigger has no usable id at {id_field!r}: {payload}")
        headers = {
            HEADER_SAGA_ID: saga_id,
            HEADER_SAGA_NAME: saga,
            HEADER_MSG_ID: trigger_message_id(saga, saga_id),
        }
        with sending(
            telemetry, subject, headers, saga_id=saga_id, message_id=headers[HEADER_MSG_ID]
        ):
            futures.append(
                await js.publish_async(subject, jsonwire.dumps(payload), headers=headers)
            )
        ids.append(saga_id)
    await asyncio.gather(*futures)
    return ids


def front_end_main(
    name: str,
    description: str | None,
    saga: str,
    subject: str,
    id_field: str,
    failures: Sequence[str],
    make: Callable[..., dict[str, Any]],
    argv: Sequence[str] | None = None,
) -> None:
    """``python -m services.<name> --count N [--fail SERVICE]``: publish N triggers, print ids."""
    parser = argparse.ArgumentParser(prog=f"python -m services.{name}", description=description)
    parser.add_argument("--nats", metavar="URL", help=f"server URL (default: ${URL_ENV})")
    parser.add_argument("--count", type=int, default=1)
    parser.add_argument("--fail", choices=failures, help="make every saga fail at this service")
    args = parser.parse_args(argv)
    settings = settings_from_env(args.nats, name)  # with the SAGA_NATS_* authentication

    async def start() -> None:
        nc = await connect(settings)
        try:
            payloads = (make(fail=args.fail) for _ in range(args.count))
            print(
                "\n".join(await publish_triggers(nc.jetstream(), saga, subject, id_field, payloads))
            )
        finally:
            await nc.drain()

    asyncio.run(start())
