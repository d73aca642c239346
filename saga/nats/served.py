"""The definitions a running engine serves, kept in a KV bucket for clients without the YAML.

Whenever the engine provisions (at start and on every reload) it writes the newest version
of each saga it runs, as one JSON object ``{name: definition}``, to the key ``newest`` of
the ``saga_definitions`` bucket. ``saga start`` reads it, so a user needs no local copy of
``definitions/``. One key, one write: names the engine no longer runs disappear with the next
write, and no reader sees half a reload. With several replicas the last one to start or
reload wins; they run the same files in any sane deployment.
"""

from __future__ import annotations

from nats.js import JetStreamContext
from nats.js.errors import BucketNotFoundError, KeyNotFoundError, NotFoundError
from pydantic import TypeAdapter, ValidationError

from saga.definition.catalog import Catalog
from saga.definition.model import SagaDefinition
from saga.errors import SagaError
from saga.nats.provision import StreamSettings, ensure_bucket
from saga.protocol import DEFINITIONS_KEY

_SERVED = TypeAdapter(dict[str, SagaDefinition])


class ServedDefinitionError(SagaError):
    """The engine's stored copy of its definitions cannot be read."""


async def serve_definitions(
    js: JetStreamContext, bucket: str, catalog: Catalog, settings: StreamSettings
) -> None:
    """Store the newest version of each saga of ``catalog`` (skipped when unchanged)."""
    kv = await ensure_bucket(js, bucket, settings)
    value = _SERVED.dump_json(catalog.newest(), exclude_none=True)
    try:
        if (await kv.get(DEFINITIONS_KEY)).value == value:
            return
    except (KeyNotFoundError, NotFoundError):
        pass
    await kv.put(DEFINITIONS_KEY, value)


async def served_definitions(js: JetStreamContext, bucket: str) -> dict[str, SagaDefinition]:
    """The definitions the engine serves, by name; empty when no engine ever wrote any."""
    try:
        entry = await (await js.key_value(bucket)).get(DEFINITIONS_KEY)
    except (BucketNotFoundError, KeyNotFoundError, NotFoundError):
        return {}
    try:
        return _SERVED.validate_json(entry.value or b"{}")
    except ValidationError as exc:
        raise ServedDefinitionError(
            f"the engine's definitions in {bucket!r} are not readable by this version of "
            f"saga ({exc.error_count()} problem(s)); give --definitions"
        ) from None
