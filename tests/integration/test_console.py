"""The web console in a real headless Chromium (Playwright) against a real engine and server.

Set ``SAGA_SCREENSHOTS=docs/images`` to save the screenshots docs/operations.md shows.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import nats
import pytest
from nats.aio.client import Client

from saga.admin import AdminServer, AdminSettings
from saga.client import find_instance, instance_store
from saga.core.state import InstanceState
from saga.definition import parse_definition
from saga.engine import Engine
from saga.nats.dlq import list_dead_letters
from saga.nats.server import EmbeddedServer
from saga.nats.topology import Topology
from tests.integration.test_engine import FAST
from tests.support import ScriptedParticipant, wait_for

CHROMIUM = os.environ.get("SAGA_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
HAVE_CHROMIUM = Path(CHROMIUM).exists()
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
TOKEN = "console-t0ken"
SHOTS = Path(os.environ["SAGA_SCREENSHOTS"]) if os.environ.get("SAGA_SCREENSHOTS") else None

SHOP = """
name: shop
description: Reserve stock, charge, ship; undo newest first when a step fails.
trigger: {event: shop.ordered, id: {field: id}}
search: {customer: trigger.customer}
steps:
  - name: reserve
    publish: {event: stock.reserve, data: {id: trigger.id}}
    success: stock.reserved
    failure: stock.rejected
    keep: [reservation]
    timeout: 60s
    compensate:
      publish: {event: stock.release, data: {reservation: steps.reserve.reservation}}
      success: stock.released
      timeout: 60s
  - name: charge
    publish: {event: pay.charge, data: {id: trigger.id, amount: trigger.amount}}
    success: pay.charged
    failure: pay.declined
    timeout: 60s
    compensate:
      publish: {event: pay.refund, data: {id: trigger.id}}
      success: pay.refunded
      failure: pay.refund-failed
      timeout: 60s
  - name: ship
    publish: {event: ship.book, data: {id: trigger.id}}
    success: ship.booked
    failure: ship.failed
    timeout: 60s
"""


def _reserve(payload: dict[str, Any], _: dict[str, str]) -> tuple[str, dict[str, Any]] | None:
    if str(payload["id"]).startswith("late-"):
        return None  # its reply arrives early, from the dead letters
    return ("stock.reserved", {"reservation": f"r-{payload['id']}"})


def _charge(payload: dict[str, Any], _: dict[str, str]) -> tuple[str, dict[str, Any]]:
    if "decline" in str(payload["id"]):
        return ("pay.declined", {"reason": "card declined: limit 1000"})
    return ("pay.charged", {})


def _ship(payload: dict[str, Any], _: dict[str, str]) -> tuple[str, dict[str, Any]] | None:
    if str(payload["id"]).startswith("hold-"):
        return None
    if str(payload["id"]).startswith("stuck-"):
        return ("ship.failed", {"reason": "no courier"})
    return ("ship.booked", {})


def _refund(payload: dict[str, Any], _: dict[str, str]) -> tuple[str, dict[str, Any]]:
    if str(payload["id"]).startswith("stuck-"):
        return ("pay.refund-failed", {"reason": "bank offline"})  # parks the saga
    return ("pay.refunded", {})


RULES = {
    "stock.reserve": _reserve,
    "stock.release": lambda p, h: ("stock.released", {}),
    "pay.charge": _charge,
    "pay.refund": _refund,
    "ship.book": _ship,
}


@dataclass
class Console:
    nc: Client
    url: str
    """The admin server's base URL; the console is at ``url + "/console/"``."""

    async def start(self, saga_id: str, **data: Any) -> None:
        payload = {"id": saga_id, "amount": 5, **data}
        await self.nc.jetstream().publish("shop.ordered", json.dumps(payload).encode())

    async def wait_status(self, saga_id: str, *statuses: str) -> InstanceState:
        store = await instance_store(self.nc, Topology())
        found: list[InstanceState] = []

        async def reached() -> bool:
            state = await find_instance(store, saga_id, "shop")
            if state is not None and state.status.value in statuses:
                found.append(state)
                return True
            return False

        await wait_for(reached, timeout=30, message=f"{saga_id} to be {'/'.join(statuses)}")
        return found[-1]


@pytest.fixture
async def console(nats_server: EmbeddedServer) -> AsyncIterator[Console]:
    nc = await nats.connect(nats_server.url)
    engine = Engine(nc, {"shop": parse_definition(SHOP)}, FAST)
    server = AdminServer(engine.view(), AdminSettings(port=0, token=TOKEN))
    url = await server.start()
    await engine.start()
    participant = await ScriptedParticipant(nc, RULES).start()
    yield Console(nc, url)
    await participant.stop()
    await server.stop()
    await engine.stop()
    await nc.close()


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    if not HAVE_CHROMIUM:  # a skipped page test proves nothing: say what is missing
        pytest.fail(f"no Chromium binary at {CHROMIUM}: apt-get install chromium")
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        launched = await p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        try:
            yield launched
        finally:
            await launched.close()


async def signed_in(browser: Any, console: Console) -> Any:
    """A page signed in through the login form (which sets the HttpOnly session cookie)."""
    context = await browser.new_context(viewport={"width": 1280, "height": 640})
    page = await context.new_page()
    page.set_default_timeout(20_000)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.errors = errors
    await page.goto(console.url + "/console/")
    assert "/console/login" in page.url
    await page.fill("input[name=token]", TOKEN)
    await page.click("button[type=submit]")
    await page.wait_for_url("**/console/")
    cookies = {c["name"]: c for c in await context.cookies()}
    assert cookies["saga_session"]["httpOnly"]
    assert TOKEN not in cookies["saga_session"]["value"]
    return page


async def shot(page: Any, name: str) -> None:
    if SHOTS is not None:
        await page.screenshot(path=str(SHOTS / f"console-{name}.png"), full_page=True)


async def test_list_search_and_a_compensated_saga(console: Console, browser: Any) -> None:
    await console.start("order-1", customer="cus-7")
    await console.start("order-decline-2", customer="cus-42")
    await console.start("hold-3", customer="cus-9")
    await console.wait_status("order-1", "completed")
    await console.wait_status("order-decline-2", "compensated")
    await console.wait_status("hold-3", "running")
    page = await signed_in(browser, console)

    rows = page.locator("#results tbody tr")
    await wait_for(lambda: _count(rows, 3), message="three rows in the list")
    await shot(page, "list")
    assert await page.locator("#results .badge.s-compensated").count() == 1

    await page.goto(console.url + "/console/sagas?limit=2")  # paging with the index's cursor
    first = await page.locator("#results tbody tr td:first-child").all_inner_texts()
    await page.click("a:has-text('older')")
    second = await page.locator("#results tbody tr td:first-child").all_inner_texts()
    assert (len(first), len(second)) == (2, 1)
    assert sorted(first + second) == ["hold-3", "order-1", "order-decline-2"]
    assert await page.locator("a:has-text('older')").count() == 0
    await page.goto(console.url + "/console/sagas?where=customer%3Dcus-7")
    assert await rows.count() == 1
    assert "order-1" in await page.locator("#results").inner_text()

    await page.click("a:has-text('Clear')")
    await page.fill("input[name=q]", "cus-42")  # a business key: a search attribute's value
    await page.click("form.filters button[type=submit]")
    await page.wait_for_url("**q=cus-42**")
    assert await rows.count() == 1
    await page.click("#results a:has-text('order-decline-2')")

    await page.wait_for_url("**/console/sagas/shop/order-decline-2")
    await page.wait_for_selector("body[data-diagrams=drawn]")
    assert await page.locator(".facts .badge.s-compensated").count() == 1
    assert "card declined: limit 1000" in await page.locator(".facts").inner_text()
    timeline = await page.locator("table.timeline").inner_text()
    for event in ("saga.started", "step.failed", "compensation.succeeded", "saga.compensated"):
        assert event in timeline
    assert await page.locator("table.timeline .k-compensation").count() >= 3
    svg = page.locator("pre.mermaid svg")
    assert await svg.count() == 1
    assert await svg.locator("g.node.failed").count() == 1  # charge
    assert await svg.locator("g.node.compensated").count() == 1  # undo reserve
    assert "reservation" in await page.locator("pre.data").inner_text()
    await shot(page, "instance")

    await page.goto(console.url + "/console/sagas?q=order-1")  # an exact id opens the instance
    await page.wait_for_url("**/console/sagas/shop/order-1")
    await page.goto(console.url + "/console/definitions/shop")
    await page.wait_for_selector("body[data-diagrams=drawn]")
    assert "asyncapi: 3.0.0" in (await page.locator("details pre").text_content() or "")
    await shot(page, "definition")
    assert not page.errors, page.errors


async def _count(locator: Any, expected: int) -> bool:
    return bool(await locator.count() == expected)


async def test_abort_a_running_saga_from_its_page(console: Console, browser: Any) -> None:
    await console.start("hold-9")
    await console.wait_status("hold-9", "running")
    page = await signed_in(browser, console)
    await page.goto(console.url + "/console/sagas/shop/hold-9")
    await page.click("a.act-abort")
    await page.wait_for_url("**/console/sagas/shop/hold-9/abort")
    await page.fill("input[name=reason]", "customer called to cancel")
    await shot(page, "abort")
    await page.click("button.act-abort")
    await page.wait_for_selector(".notice.ok")
    assert "abort: OperatorAbort applied" in await page.locator(".notice").inner_text()
    state = await console.wait_status("hold-9", "compensated")
    assert any(
        h.event == "operator.abort" and h.detail == "customer called to cancel"
        for h in state.history
    )
    await page.click("a:has-text('Back to the instance')")
    assert "operator.abort" in await page.locator("table.timeline").inner_text()
    assert not page.errors, page.errors


async def test_terminate_then_redrive_from_the_instance_page(
    console: Console, browser: Any
) -> None:
    await console.start("hold-7")
    await console.wait_status("hold-7", "running")
    page = await signed_in(browser, console)
    await page.goto(console.url + "/console/sagas/shop/hold-7")
    assert await page.locator("a.act-redrive").count() == 0  # not offered while running
    await page.click("a.act-terminate")
    await page.wait_for_url("**/console/sagas/shop/hold-7/terminate")
    assert "without compensating" in await page.locator("main").inner_text()
    await page.fill("input[name=reason]", "booked by phone")
    await page.click("button.act-terminate")
    await page.wait_for_selector(".notice.ok")
    state = await console.wait_status("hold-7", "terminated")
    assert [h.detail for h in state.history if h.event == "operator.terminate"] == [
        "booked by phone"
    ]
    assert state.steps["reserve"].compensation.value == "none"  # nothing was undone
    await page.goto(console.url + "/console/sagas/shop/hold-7")
    assert "terminated" in await page.locator("main").inner_text()
    await page.click("a.act-redrive")
    await page.fill("input[name=reason]", "courier found")
    await page.click("button.act-redrive")
    await page.wait_for_selector(".notice.ok")
    state = await console.wait_status("hold-7", "running")
    assert state.run == 1
    assert not page.errors, page.errors


async def test_replay_a_dead_letter(console: Console, browser: Any) -> None:
    js = console.nc.jetstream()
    early = {"Saga-Id": "late-1", "Saga-Name": "shop", "Saga-Step": "reserve", "Saga-Kind": "step"}
    await js.publish("stock.reserved", b'{"reservation": "r-early"}', headers=early)

    async def lettered() -> bool:
        return len(await list_dead_letters(js)) == 1

    await wait_for(lettered, message="the early reply to be dead-lettered")
    await console.start("late-1")
    await console.wait_status("late-1", "running")

    page = await signed_in(browser, console)
    await page.click("header nav a:has-text('Dead letters')")
    await page.select_option("select[name=code]", "unknown-instance")
    await page.click("form.filters button[type=submit]")
    await page.click("#results tbody tr a >> nth=0")
    body = await page.locator("pre.data").inner_text()
    assert "r-early" in body
    assert "Saga-Dlq-Reason" in await page.locator("table").inner_text()
    await shot(page, "dead-letter")
    await page.click("a.act-replay")
    await page.click("button.act-replay")
    await page.wait_for_selector(".notice.ok")
    assert "replayed onto stock.reserved" in await page.locator(".notice").inner_text()
    state = await console.wait_status("late-1", "completed")
    assert state.context["steps"]["reserve"]["reservation"] == "r-early"
    assert await list_dead_letters(js) == []
    assert not page.errors, page.errors


async def test_the_list_refreshes_itself(console: Console, browser: Any) -> None:
    page = await signed_in(browser, console)
    assert "No instance matches" in await page.locator("#results").inner_text()
    await console.start("order-new")
    await page.wait_for_selector("#results a:has-text('order-new')", timeout=30_000)
    assert page.url.endswith("/console/")  # the same page, not reloaded by hand
    assert not page.errors, page.errors


async def test_reading_with_javascript_off(console: Console, browser: Any) -> None:
    await console.start("order-decline-8")
    await console.wait_status("order-decline-8", "compensated")
    context = await browser.new_context(java_script_enabled=False)
    page = await context.new_page()
    await page.goto(f"{console.url}/console/sagas/shop/order-decline-8?token={TOKEN}")
    assert page.url.endswith("/console/sagas/shop/order-decline-8")  # the token left the URL
    assert "flowchart TD" in await page.locator("pre.mermaid").inner_text()
    assert "saga.compensated" in await page.locator("table.timeline").inner_text()
    await page.click("header nav a:has-text('Instances')")
    assert "order-decline-8" in await page.locator("#results").inner_text()


async def test_retry_every_parked_saga_of_a_saga(console: Console, browser: Any) -> None:
    for saga_id in ("stuck-1", "stuck-2"):
        await console.start(saga_id)
        await console.wait_status(saga_id, "parked")
    await console.start("order-3")
    await console.wait_status("order-3", "completed")
    page = await signed_in(browser, console)
    await page.select_option("select[name=saga]", "shop")
    await page.select_option("select[name=state]", "parked")
    await page.click("form.filters button[type=submit]")
    await page.click("a:has-text('Retry all parked shop sagas')")
    assert await page.locator("ul.targets li").all_inner_texts() == ["stuck-2", "stuck-1"]
    await page.fill("input[name=reason]", "bank back online")
    await shot(page, "bulk-retry")
    await page.click("button.act-retry")
    await page.wait_for_selector(".notice")
    assert "retry: 2 of 2 applied" in await page.locator(".notice").inner_text()
    for saga_id in ("stuck-1", "stuck-2"):
        state = await console.wait_status(saga_id, "parked")  # the bank is still offline
        assert [h.event for h in state.history].count("operator.retry") == 1
    assert not page.errors, page.errors


# -- without a browser: plain HTTP, as with JavaScript off -----------------------------------


async def fetch(
    url: str, token: str | None = TOKEN, **kwargs: Any
) -> tuple[int, str, aiohttp.ClientResponse]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    headers.update(kwargs.pop("headers", {}))
    method = "POST" if "data" in kwargs else "GET"
    async with (
        aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session,
        session.request(method, url, headers=headers, allow_redirects=False, **kwargs) as r,
    ):
        return r.status, await r.text(), r


async def test_pages_read_without_javascript(console: Console) -> None:
    await console.start("order-decline-5", customer="cus-5")
    await console.wait_status("order-decline-5", "compensated")
    base = console.url + "/console"
    status, text, _ = await fetch(base + "/sagas?state=compensated")
    assert status == 200
    assert "order-decline-5" in text
    assert 'class="badge s-compensated"' in text
    status, text, _ = await fetch(base + "/sagas/shop/order-decline-5")
    assert status == 200
    assert '<pre class="mermaid"' in text  # the diagram's source, readable as is
    assert "flowchart TD" in text
    assert "class charge failed" in text
    assert "compensation.succeeded" in text
    assert "card declined: limit 1000" in text
    status, text, _ = await fetch(base + "/definitions")
    assert (status, "shop" in text) == (200, True)
    status, text, _ = await fetch(base + "/definitions/shop")
    assert (status, "asyncapi: 3.0.0" in text) == (200, True)
    status, text, _ = await fetch(base + "/definitions/shop/1/asyncapi.yaml")
    assert (status, text.startswith("asyncapi: 3.0.0")) == (200, True)
    status, text, _ = await fetch(base + "/dlq")
    assert (status, "No dead letters" in text) == (200, True)
    status, text, _ = await fetch(base + "/sagas?state=bogus&since=yesterday")
    assert status == 200
    assert "state must be one of" in text
    assert "since: &#x27;yesterday&#x27; is neither a duration" in text
    status, text, _ = await fetch(base + "/sagas/shop/nobody")
    assert status == 404
    status, mermaid, response = await fetch(base + "/static/mermaid.min.js", token=None)
    assert status == 200
    assert "javascript" in response.content_type
    assert len(mermaid) > 1_000_000


async def test_saga_ids_and_payloads_are_shown_escaped(console: Console) -> None:
    hostile = "<script>alert(1)</script>"
    saga_id = f"x/{hostile}?#"  # also a slash, a question mark and a hash in the id
    await console.start(saga_id, customer=hostile, note='"><img src=x onerror=alert(2)>')
    await console.wait_status(saga_id, "completed")
    base = console.url + "/console"
    for path in (
        "/sagas",
        f"/sagas?q={quote(hostile)}",
        f"/sagas/shop/{quote(saga_id, safe='')}",
        f"/sagas/shop/{quote(saga_id, safe='')}/abort",
    ):
        status, text, _ = await fetch(base + path)
        assert status == 200, path
        assert "<script>alert" not in text, path
        assert "<img src=x" not in text, path
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text, path


async def test_sign_in_and_csrf(console: Console) -> None:
    base = console.url + "/console"
    status, _, response = await fetch(base + "/sagas", token=None)
    assert (status, response.headers["Location"]) == (303, "/console/login?next=%2Fconsole%2Fsagas")
    status, _, response = await fetch(base + "/sagas?token=wrong", token=None)
    assert status == 401
    status, _, response = await fetch(base + f"/sagas?state=running&token={TOKEN}", token=None)
    assert (status, response.headers["Location"]) == (303, "/console/sagas?state=running")
    cookie = response.cookies["saga_session"]
    assert cookie["httponly"]
    assert cookie["samesite"] == "Strict"
    assert TOKEN not in cookie.value
    assert (await fetch(console.url + "/sagas", token=None))[0] == 401  # the API still needs it

    await console.start("hold-csrf")
    await console.wait_status("hold-csrf", "running")
    action = base + "/sagas/shop/hold-csrf/abort"
    status, text, _ = await fetch(action, data={"reason": "no token", "csrf": "x" * 40})
    assert (status, "CSRF" in text) == (403, True)
    csrf = "c" * 43
    cookies = {"saga_csrf": csrf}
    status, _, _ = await fetch(
        action,
        data={"reason": "from elsewhere", "csrf": csrf},
        cookies=cookies,
        headers={"Origin": "https://evil.example"},
    )
    assert status == 403
    status, text, _ = await fetch(
        action, data={"reason": "from here", "csrf": csrf}, cookies=cookies
    )
    assert (status, "OperatorAbort applied" in text) == (200, True)


async def test_listing_after_the_index_tombstones_expired(console: Console) -> None:
    """Regression: the index listing stopped at its first entry once the tombstones of the
    newest status changes had expired (it asked for the stream's last sequence by subject)."""
    for saga_id in ("stuck-4", "stuck-5"):
        await console.start(saga_id)
        await console.wait_status(saga_id, "parked")
    await console.start("order-6")
    await console.wait_status("order-6", "completed")
    js = console.nc.jetstream()

    async def only_live_entries() -> bool:  # tombstones live 1 s
        return (await js.stream_info(Topology().index_stream)).state.messages == 3

    await wait_for(only_live_entries, timeout=30, message="the tombstones to expire")
    status, text, _ = await fetch(console.url + "/console/sagas?saga=shop&state=parked")
    assert status == 200
    assert ("stuck-4" in text, "stuck-5" in text) == (True, True)


async def test_purge_a_dead_letter(console: Console) -> None:
    js = console.nc.jetstream()
    await js.publish("stock.reserved", b"not json", headers={"Saga-Id": "x", "Saga-Name": "shop"})

    async def lettered() -> bool:
        return len(await list_dead_letters(js)) == 1

    await wait_for(lettered, message="a dead letter")
    (letter,) = await list_dead_letters(js)
    base = f"{console.url}/console/dlq/{letter.sequence}"
    status, text, _ = await fetch(base)
    assert (status, "not json" in text) == (200, True)
    csrf = "p" * 43
    status, text, _ = await fetch(base + "/purge", data={"csrf": csrf}, cookies={"saga_csrf": csrf})
    assert (status, "purged" in text) == (200, True)
    assert await list_dead_letters(js) == []
    assert (await fetch(base))[0] == 404
