"""Definition pages: each saga's loaded versions, diagram, AsyncAPI document, counts by state."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

from aiohttp import web

from saga import jsonwire
from saga.asyncapi import asyncapi_document, to_yaml
from saga.console.app import engine_of, html_response, store_of
from saga.console.html import (
    STATES,
    Markup,
    badge,
    e,
    join,
    link,
    page,
    seg,
    table,
    url,
)
from saga.console.queries import counts_by_state
from saga.console.view import coloured_diagram
from saga.definition.model import SagaDefinition
from saga.definition.schedule import following_tick
from saga.engine.admission import GateCount


def routes(router: web.UrlDispatcher) -> None:
    router.add_get("/definitions", overview)
    router.add_get("/definitions/{name}", versions)
    router.add_get("/definitions/{name}/{version:\\d+}/asyncapi.yaml", asyncapi)


def _count_links(name: str, counts: dict[str, int] | None) -> list[Markup]:
    if counts is None:  # NATS refused to count (see the log)
        return [e("?") for _ in STATES]
    return [
        link(url("sagas", {"saga": name, "state": s}), counts[s], "count") if counts[s] else e(0)
        for s in STATES
    ]


async def overview(request: web.Request) -> web.Response:
    catalog = engine_of(request).catalog
    store = store_of(request)
    rows = []
    for name in catalog.names():
        counts = await counts_by_state(store, engine_of(request).js, name)
        versions = ", ".join(f"v{d.version}" for d in catalog if d.name == name)
        rows.append(
            [link(url(f"definitions/{seg(name)}"), name), e(versions), *_count_links(name, counts)]
        )
    headers = ["saga", "versions", *STATES]
    body = table(headers, rows, "list")
    return html_response(request, page("Definitions", body, "definitions"))


def _version(definition: SagaDefinition) -> Markup:
    source = coloured_diagram(definition)
    yaml_url = url(f"definitions/{seg(definition.name)}/{definition.version}/asyncapi.yaml")
    steps = table(
        ["step", "publishes", "success", "failure", "compensation"],
        [
            [
                e(s.name),
                Markup(
                    f'<span class="mono">{e(s.publish.event if s.publish else "(observed)")}</span>'
                ),
                e(", ".join(s.success)),
                e(", ".join(s.failure)),
                e(s.compensate.publish.event if s.compensate else ""),
            ]
            for s in definition.steps
        ],
    )
    return Markup(
        f'<section class="card"><h2>Version {definition.version}</h2>'
        f"<p>{e(definition.description or '')}</p>"
        f'<p>Trigger <span class="mono">{e(definition.trigger.event)}</span> · '
        f"{link(yaml_url, 'AsyncAPI document (YAML)')}</p>{_schedule(definition)}"
        f'<pre class="mermaid">{e(source)}</pre>{steps}'
        f"<details><summary>AsyncAPI</summary>"
        f'<pre class="data">{e(to_yaml(asyncapi_document(definition)))}</pre></details></section>'
    )


def _schedule(definition: SagaDefinition) -> Markup:
    """The ``schedule`` in one line: when it fires (UTC), the next tick, and the data."""
    schedule = definition.schedule
    if schedule is None:
        return Markup("")
    when = f"cron {schedule.cron}" if schedule.cron else f"every {schedule.pattern[7:]}"
    upcoming = following_tick(schedule.pattern, datetime.now(UTC))
    after = f" · next about {upcoming:%Y-%m-%d %H:%M:%S} UTC" if upcoming else ""
    return Markup(
        f'<p class="schedule">Scheduled: <span class="mono">{e(when)}</span> (UTC){e(after)}'
        f' with <span class="mono">{e(jsonwire.dumps(schedule.data).decode())}</span></p>'
    )


def _limits(definition: SagaDefinition, counts: Mapping[str, GateCount]) -> Markup:
    """The newest version's ``limits`` and steps' ``max_in_flight``, one line each, with what
    waits and what holds a slot now (``counts`` by gate key, as of the engine's last look,
    about every second)."""
    lines = []
    limits = definition.limits
    if limits is not None:
        given = [
            f"{key} {value}"
            for key, value in (
                ("max_running", limits.max_running),
                ("start_rate", limits.start_rate),
            )
            if value is not None
        ]
        count = counts.get(definition.name)
        now = f" · {count.waiting} waiting, {count.admitted} running" if count else ""
        lines.append(f'Limits: <span class="mono">{e(", ".join(given))}</span>{e(now)}')
    for step in definition.steps:
        if step.max_in_flight is not None:
            count = counts.get(f"{definition.name}.{step.name}")
            now = f" · {count.waiting} waiting, {count.admitted} in flight" if count else ""
            lines.append(
                f'Step {e(step.name)}: <span class="mono">max_in_flight {step.max_in_flight}'
                f"</span>{e(now)}"
            )
    return Markup("".join(f'<p class="limits card">{line}</p>' for line in lines))


async def versions(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    found = [d for d in engine_of(request).catalog if d.name == name]
    if not found:
        raise web.HTTPNotFound(text=f"no saga named {name!r} is loaded")
    counts = await counts_by_state(store_of(request), engine_of(request).js, name)
    summary = Markup(
        '<p class="counts card">'
        + " ".join(
            f"{badge(s)} {c}" for s, c in zip(STATES, _count_links(name, counts), strict=True)
        )
        + "</p>"
    )
    limits = _limits(found[-1], {c.key: c for c in engine_of(request).health().limits})
    body = join([summary, limits, *(_version(d) for d in reversed(found))])
    return html_response(request, page(f"Saga {name}", body, "definitions"))


async def asyncapi(request: web.Request) -> web.Response:
    name, version = request.match_info["name"], int(request.match_info["version"])
    definition = engine_of(request).catalog.get(name, version)
    if definition is None:
        raise web.HTTPNotFound(text=f"no saga {name!r} version {version} is loaded")
    return web.Response(text=to_yaml(asyncapi_document(definition)), content_type="text/yaml")
