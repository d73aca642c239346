"""``saga start`` against a real server and engine: the saga id rule, where the definition
comes from (``--definitions`` or the running engine), ``--data`` sources and checks, and a
trigger for an instance that already exists."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import nats
import pytest
from click.testing import CliRunner, Result
from nats.aio.client import Client

from saga.cli import main
from saga.client import find_instance, instance_store
from saga.definition import Catalog, parse_definition
from saga.engine import Engine, EngineSettings
from saga.nats.provision import StreamSettings
from saga.nats.reader import read_stream
from saga.nats.served import serve_definitions, served_definitions
from saga.nats.server import EmbeddedServer
from saga.nats.topology import Topology
from tests.support import wait_for

NESTED = """
name: nested
trigger: {event: shop.ordered, id: {field: order.id}}
steps:
  - name: reserve
    publish: {event: stock.reserve, data: {id: saga.id}}
    success: stock.reserved
    timeout: 30s
"""
BUCKET = Topology().definitions_bucket


@pytest.fixture
async def client(nats_server: EmbeddedServer) -> AsyncIterator[Client]:
    nc = await nats.connect(nats_server.url)
    engine = Engine(
        nc,
        {"nested": parse_definition(NESTED)},
        EngineSettings(streams=StreamSettings(ack_wait_backoff=(1.0,)), fetch_wait=0.2),
    )
    await engine.start()
    yield nc
    await engine.stop()
    await nc.close()


async def saga(url: str, *args: str, stdin: str | None = None) -> Result:
    """The command in a thread of its own: it runs its own event loop, as from a shell."""
    return await asyncio.to_thread(
        CliRunner().invoke, main, ["start", *args, "--nats", url], input=stdin
    )


async def instance_exists(nc: Client, saga_id: str) -> None:
    store = await instance_store(nc.jetstream(), Topology())

    async def stored() -> bool:
        return await find_instance(store, saga_id, "nested") is not None

    await wait_for(stored, message=f"instance {saga_id}")


@pytest.mark.parametrize("from_folder", [True, False], ids=["definitions-folder", "engine"])
async def test_the_id_field_is_a_path_into_the_trigger(
    nats_server: EmbeddedServer, client: Client, tmp_path: Path, from_folder: bool
) -> None:
    (tmp_path / "nested.yaml").write_text(NESTED)
    folder = ["--definitions", str(tmp_path)] if from_folder else []
    result = await saga(nats_server.url, "nested", "--data", '{"order": {"id": "o-42"}}', *folder)
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "o-42"
    await instance_exists(client, "o-42")
    [trigger] = await read_stream(client.jetstream(), "SAGA_EVENTS", ["shop.ordered"])
    assert trigger.headers["Saga-Id"] == "o-42"


async def test_data_comes_from_a_file_or_stdin(
    nats_server: EmbeddedServer, client: Client, tmp_path: Path
) -> None:
    payload = tmp_path / "order.json"
    payload.write_text('{"order": {"id": "from-file"}}')
    from_file = await saga(nats_server.url, "nested", "--data", f"@{payload}")
    assert from_file.exit_code == 0, from_file.output
    assert from_file.stdout.strip() == "from-file"
    piped = await saga(nats_server.url, "nested", "--data", "-", stdin='{"order": {"id": "piped"}}')
    assert piped.exit_code == 0, piped.output
    assert piped.stdout.strip() == "piped"
    await instance_exists(client, "piped")
    missing = await saga(nats_server.url, "nested", "--data", f"@{tmp_path / 'nope.json'}")
    assert missing.exit_code == 2
    assert "cannot read" in missing.output


@pytest.mark.parametrize(
    "data", ['{"order": {"id": "n-1"}, "total": NaN}', '{"order": {"id": "n-1"}, "total": 1e400}']
)
async def test_non_finite_numbers_are_refused_and_nothing_is_published(
    nats_server: EmbeddedServer, client: Client, data: str
) -> None:
    result = await saga(nats_server.url, "nested", "--data", data)
    assert result.exit_code == 2
    assert "--data" in result.output
    assert "NaN" in result.output or "1e400" in result.output
    assert await read_stream(client.jetstream(), "SAGA_EVENTS", ["shop.ordered"]) == []


async def test_a_trigger_for_an_existing_instance_says_so_and_starts_nothing(
    nats_server: EmbeddedServer, client: Client
) -> None:
    first = await saga(nats_server.url, "nested", "--data", '{"order": {"id": "o-1"}}')
    assert first.exit_code == 0, first.output
    await instance_exists(client, "o-1")
    again = await saga(nats_server.url, "nested", "--data", '{"order": {"id": "o-1", "x": 2}}')
    assert again.exit_code == 1
    assert again.stdout == ""
    assert "o-1 already exists (started " in again.stderr
    assert "state running); no new saga started" in again.stderr
    assert len(await read_stream(client.jetstream(), "SAGA_EVENTS", ["shop.ordered"])) == 1


async def test_without_an_engine_or_a_folder_the_error_says_what_is_missing(
    nats_server: EmbeddedServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # no ./definitions here
    result = await saga(nats_server.url, "nested")
    assert result.exit_code == 2
    assert "no saga 'nested'" in result.output
    assert "saga run" in result.output


async def test_the_engine_serves_the_newest_versions_it_runs(client: Client) -> None:
    js = client.jetstream()
    served = await served_definitions(js, BUCKET)
    assert list(served) == ["nested"]
    assert served["nested"] == parse_definition(NESTED)
    other = parse_definition(NESTED.replace("name: nested", "name: other"))
    await serve_definitions(js, BUCKET, Catalog([other]), StreamSettings())
    assert list(await served_definitions(js, BUCKET)) == ["other"]  # a reload drops "nested"
