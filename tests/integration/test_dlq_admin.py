"""``saga dlq list`` / ``saga dlq replay`` against a real server and engine."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import nats
import pytest
from click.testing import CliRunner
from nats.aio.client import Client
from nats.js import JetStreamContext

from saga.cli.dlq import dlq_group
from saga.client import find_instance, instance_store
from saga.definition import parse_definition
from saga.engine import Engine, EngineSettings
from saga.nats.dlq import DeadLetterError, get_dead_letter, list_dead_letters, replay_many
from saga.nats.provision import StreamSettings
from saga.nats.reader import read_stream
from saga.nats.server import EmbeddedServer
from saga.nats.topology import Topology
from tests.support import wait_for

SHOP = """
name: shop
trigger: {event: shop.ordered, id: {field: id}}
steps:
  - name: reserve
    publish: {event: stock.reserve, data: {id: trigger.id}}
    success: stock.reserved
    timeout: 30s
"""
REPLY = {"Saga-Id": "late-1", "Saga-Name": "shop", "Saga-Step": "reserve", "Saga-Kind": "step"}


@pytest.fixture
async def client(nats_server: EmbeddedServer) -> AsyncIterator[Client]:
    nc = await nats.connect(nats_server.url)
    engine = Engine(
        nc,
        {"shop": parse_definition(SHOP)},
        EngineSettings(streams=StreamSettings(ack_wait_backoff=(1.0,)), fetch_wait=0.2),
    )
    await engine.start()
    yield nc
    await engine.stop()
    await nc.close()


async def letters(js: JetStreamContext, count: int) -> None:
    async def arrived() -> bool:
        return len(await list_dead_letters(js)) >= count

    await wait_for(arrived, message=f"{count} dead letter(s)")


async def early_reply_then_trigger(js: JetStreamContext) -> None:
    """A reply that arrives before its instance exists is dead-lettered (unknown-instance);
    then the instance is started and waits for that very reply."""
    await js.publish("stock.reserved", b'{"reservation": "r-1"}', headers=REPLY)
    await js.publish("stock.reserved", b"not json", headers=REPLY)
    await letters(js, 2)
    await js.publish("shop.ordered", b'{"id": "late-1"}')
    store = await instance_store(js, Topology())

    async def waiting() -> bool:
        return (await find_instance(store, "late-1", "shop")) is not None

    await wait_for(waiting, message="instance late-1")


async def test_list_shows_each_dead_letter_with_its_reason(client: Client) -> None:
    js = client.jetstream()
    await early_reply_then_trigger(js)
    found = await list_dead_letters(js)
    assert [(d.code, d.subject, d.saga_id) for d in found] == [
        ("unknown-instance", "stock.reserved", "late-1"),
        ("malformed", "stock.reserved", "late-1"),
    ]
    assert "no instance" in found[0].reason
    assert found[0].data == b'{"reservation": "r-1"}'
    assert found[0].origin.startswith("SAGA_EVENTS:")
    assert [d.code for d in await list_dead_letters(js, code="malformed")] == ["malformed"]
    assert len(await list_dead_letters(js, limit=1)) == 1


async def test_replay_re_drives_the_original_and_removes_the_dead_letter(client: Client) -> None:
    js = client.jetstream()
    await early_reply_then_trigger(js)
    [unknown] = await list_dead_letters(js, code="unknown-instance")
    [done] = await replay_many(js, [unknown.sequence])
    assert not done.duplicate
    store = await instance_store(js, Topology())

    async def completed() -> bool:
        state = await find_instance(store, "late-1", "shop")
        return state is not None and state.status.value == "completed"

    await wait_for(completed, message="the replayed reply to complete the saga")
    state = await find_instance(store, "late-1", "shop")
    assert state is not None
    assert state.context["steps"]["reserve"] == {"reservation": "r-1"}
    assert [d.code for d in await list_dead_letters(js)] == ["malformed"]
    [copy] = [m for m in await read_stream(js, "SAGA_EVENTS", ["stock.reserved"])][-1:]
    assert copy.headers["Nats-Msg-Id"] == f"replay:SAGA_DLQ:{unknown.sequence}"
    assert not [k for k in copy.headers if k.startswith("Saga-Dlq-")]
    assert copy.headers["Saga-Id"] == "late-1"


async def test_a_replay_repeated_after_a_crash_is_dropped_as_a_duplicate(client: Client) -> None:
    js = client.jetstream()
    await early_reply_then_trigger(js)
    [unknown] = await list_dead_letters(js, code="unknown-instance")
    # A replay that published, then died before deleting the dead letter:
    first = await js.publish(
        unknown.subject, unknown.data, headers=unknown.replay_headers("SAGA_DLQ")
    )
    [again] = await replay_many(js, [unknown.sequence])
    assert not first.duplicate
    assert again.duplicate
    assert await list_dead_letters(js, code="unknown-instance") == []
    with pytest.raises(DeadLetterError, match="no dead letter"):
        await get_dead_letter(js, unknown.sequence)


async def run_cli(url: str, *args: str, status: int = 0) -> str:
    """The command in a thread of its own: it runs its own event loop, as from a shell."""
    result = await asyncio.to_thread(CliRunner().invoke, dlq_group, [*args, "--nats", url])
    assert result.exit_code == status, result.output
    return result.output


async def test_the_cli_lists_and_replays(nats_server: EmbeddedServer, client: Client) -> None:
    js = client.jetstream()
    await early_reply_then_trigger(js)
    text = await run_cli(nats_server.url, "list")
    assert "unknown-instance" in text
    assert "shop/late-1" in text
    listed = json.loads(await run_cli(nats_server.url, "list", "--json", "--code", "malformed"))
    assert [(d["code"], d["data"]) for d in listed] == [("malformed", "not json")]
    out = await run_cli(nats_server.url, "replay", "--all", "--code", "unknown-instance")
    assert "1 dead letter(s) replayed" in out
    remaining = json.loads(await run_cli(nats_server.url, "list", "--json"))
    assert [d["code"] for d in remaining] == ["malformed"]
    usage = await run_cli(nats_server.url, "replay", status=2)
    assert "--all" in usage


async def foreign_letter(
    js: JetStreamContext, subject: str, saga_id: str, code: str = "handler-failed"
) -> int:
    """A dead letter as another language's participant writes it: published with an expected
    stream (nats.js ``expect.streamName``, nats-py ``stream=``), so the stored copy carries
    ``Nats-Expected-Stream: SAGA_DLQ``."""
    headers = {
        **REPLY,
        "Saga-Id": saga_id,
        "Saga-Dlq-Code": code,
        "Saga-Dlq-Reason": "the handler kept failing",
        "Saga-Dlq-Subject": subject,
        "Saga-Dlq-Stream": "SAGA_EVENTS",
        "Saga-Dlq-Sequence": "1",
        "Saga-Dlq-Consumer": "stock",
    }
    ack = await js.publish(
        f"saga.dlq.{code}", b'{"reservation": "r-9"}', headers=headers, stream="SAGA_DLQ"
    )
    return int(ack.seq)


async def instance_status(js: JetStreamContext, saga_id: str) -> str | None:
    state = await find_instance(await instance_store(js, Topology()), saga_id, "shop")
    return state.status.value if state else None


async def test_replay_all_strips_publish_expectations_and_goes_on_past_a_bad_letter(
    nats_server: EmbeddedServer, client: Client
) -> None:
    js = client.jetstream()
    for saga_id in ("x-1", "x-2"):
        await js.publish("shop.ordered", json.dumps({"id": saga_id}).encode())
    first = await foreign_letter(js, "stock.reserved", "x-1")
    bad = await foreign_letter(js, "nowhere.captured", "x-3")
    last = await foreign_letter(js, "stock.reserved", "x-2")
    [stored] = await list_dead_letters(js, limit=1)
    assert stored.headers["Nats-Expected-Stream"] == "SAGA_DLQ"

    out = await run_cli(nats_server.url, "replay", "--all", status=1)
    assert f"dead letter {first} (handler-failed) -> stock.reserved" in out
    assert f"dead letter {last} (handler-failed) -> stock.reserved" in out
    assert f"dead letter {bad} (handler-failed) not replayed: no stream captures" in out
    assert "2 dead letter(s) replayed, 1 failed" in out
    assert "Traceback" not in out
    assert [d.sequence for d in await list_dead_letters(js)] == [bad]
    for saga_id in ("x-1", "x-2"):
        await wait_for(lambda s=saga_id: _is(js, s, "completed"), message=f"{saga_id} to complete")
    copies = await read_stream(js, "SAGA_EVENTS", ["stock.reserved"])
    assert copies
    assert all(not k.startswith("Nats-Expected") for m in copies for k in m.headers)


async def _is(js: JetStreamContext, saga_id: str, status: str) -> bool:
    return await instance_status(js, saga_id) == status


async def test_replay_by_code_needs_no_all(nats_server: EmbeddedServer, client: Client) -> None:
    js = client.jetstream()
    await early_reply_then_trigger(js)
    out = await run_cli(nats_server.url, "replay", "--code", "unknown-instance")
    assert "1 dead letter(s) replayed, 0 failed" in out
    assert [d.code for d in await list_dead_letters(js)] == ["malformed"]
    both = await run_cli(nats_server.url, "replay", "1", "--all", status=2)
    assert "not both" in both


async def test_show_prints_why_every_header_and_the_body(
    nats_server: EmbeddedServer, client: Client
) -> None:
    js = client.jetstream()
    sequence = await foreign_letter(js, "stock.reserved", "s-1")
    out = await run_cli(nats_server.url, "show", str(sequence))
    assert f"sequence  {sequence}" in out
    assert "reason    the handler kept failing" in out
    assert "  Saga-Step: reserve" in out
    assert "  Nats-Expected-Stream: SAGA_DLQ" in out
    assert '"reservation": "r-9"' in out
    as_json = json.loads(await run_cli(nats_server.url, "show", str(sequence), "--json"))
    assert as_json["data"] == '{"reservation": "r-9"}'
    missing = await run_cli(nats_server.url, "show", "999", status=1)
    assert "no dead letter 999" in missing


async def test_purge_asks_first_and_deletes_only_what_matches(
    nats_server: EmbeddedServer, client: Client
) -> None:
    js = client.jetstream()
    await early_reply_then_trigger(js)  # one unknown-instance, one malformed
    await foreign_letter(js, "stock.reserved", "p-1")
    await foreign_letter(js, "other.subject", "p-2")

    async def purge(*args: str, answer: str | None = None, status: int = 0) -> str:
        result = await asyncio.to_thread(
            CliRunner().invoke, dlq_group, ["purge", *args, "--nats", nats_server.url], answer
        )
        assert result.exit_code == status, result.output
        return result.output

    refused = await purge("--code", "handler-failed", answer="n\n", status=1)
    assert "Delete these 2 dead letter(s) (code handler-failed)?" in refused
    assert len(await list_dead_letters(js)) == 4
    out = await purge("--code", "handler-failed", "--subject", "other.*", answer="y\n")
    assert "1 dead letter(s) deleted" in out
    assert [d.saga_id for d in await list_dead_letters(js, code="handler-failed")] == ["p-1"]
    assert "3 dead letter(s) deleted" in await purge("--subject", "stock.>", "--yes")
    assert [d.code for d in await list_dead_letters(js)] == []
    assert "no dead letters match" in await purge("--yes")


async def test_list_keeps_rows_narrow_when_one_saga_id_is_long(
    nats_server: EmbeddedServer, client: Client
) -> None:
    js = client.jetstream()
    await foreign_letter(js, "stock.reserved", "short")
    await foreign_letter(js, "stock.reserved", "x" * 250)
    lines = (await run_cli(nats_server.url, "list")).splitlines()
    assert len(lines) == 3
    assert all(len(line) < 200 for line in lines), lines
    short = lines[1]
    assert short.index("the handler kept failing") < 140
    assert "shop/short " in short
