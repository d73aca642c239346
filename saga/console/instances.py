"""Instance pages: the filtered list, one instance, and operator actions (one or in bulk).

An action is two steps that both work without JavaScript: a GET shows what will happen
and asks for a reason, the POST (with the CSRF token) goes through the engine's
operator path (:meth:`Engine.act`), exactly like ``saga abort`` and the JSON API.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

from aiohttp import web

from saga.client import find_record
from saga.console import auth, signals
from saga.console.app import (
    engine_of,
    error_page,
    html_response,
    posted,
    settings_of,
    store_of,
)
from saga.console.html import (
    STATES,
    Markup,
    badge,
    csrf_field,
    e,
    join,
    legend,
    link,
    notice,
    options,
    page,
    seg,
    table,
    url,
    when,
)
from saga.console.queries import ListQuery, Page, list_page, parse_query
from saga.console.view import coloured_diagram, format_offset, timeline
from saga.core.state import InstanceState, Status
from saga.definition.catalog import Catalog
from saga.definition.model import SagaDefinition
from saga.engine.operator import ACTIONS, ActionRequest
from saga.index import SagaSummary
from saga.protocol import child_saga_id
from saga.telemetry import trace_id_of

log = logging.getLogger("saga.console")
BULK_LIMIT = 500
OFFERED: dict[str, tuple[Status, ...]] = {
    "abort": (Status.RUNNING,),
    "retry": (Status.PARKED, Status.RUNNING),
    "resume": (Status.PARKED,),
    "terminate": (Status.RUNNING, Status.COMPENSATING, Status.PARKED),
    "redrive": (Status.COMPENSATED, Status.PARKED, Status.TERMINATED),
}
"""The actions the page offers by status (the engine refuses the others anyway)."""
EXPLAIN = {
    "abort": "stops the saga and compensates every completed step, newest first",
    "retry": "sends the parked compensation (or the in-flight step) again",
    "resume": "marks the parked compensation as done by hand and carries on compensating",
    "terminate": "ends the saga now without compensating: what its steps did stays as it is",
    "redrive": "runs the saga again from its failed step with the same data (steps whose "
    "effect stands are not run again)",
}


def instance_url(state: InstanceState | SagaSummary) -> str:
    return url(f"sagas/{seg(state.saga_name)}/{seg(state.saga_id)}")


def routes(router: web.UrlDispatcher) -> None:
    router.add_get("/", sagas)
    router.add_get("/sagas", sagas)
    router.add_get("/sagas/{name}/{saga_id}", instance)
    router.add_get("/sagas/{name}/{saga_id}/{action}", confirm_action)
    router.add_post("/sagas/{name}/{saga_id}/{action}", do_action)
    router.add_get("/bulk/{action}", confirm_bulk)
    router.add_post("/bulk/{action}", do_bulk)
    signals.routes(router)


# -- the list -------------------------------------------------------------------------------


def search_attributes(catalog: Catalog) -> list[tuple[str, str]]:
    """``(saga, attribute)`` of every declared search attribute: what a search looks in."""
    return sorted({(d.name, a) for d in catalog for a in (d.search or {})})


async def sagas(request: web.Request) -> web.Response:
    catalog = engine_of(request).catalog
    names = catalog.names()
    query, problems = parse_query(request.query, names, datetime.now(UTC))
    result = await list_page(store_of(request), query, search_attributes(catalog))
    if result.exact is not None and query.cursor is None:
        raise web.HTTPSeeOther(instance_url(result.exact))  # an id: straight to it
    shown = Markup("".join(notice(p, ok=False) for p in problems)) if problems else None
    body = join([_filters(query, names), legend(), _results(query, result)])
    return html_response(request, page("Instances", body, "sagas", shown))


def _filters(query: ListQuery, names: list[str]) -> Markup:
    f = query.fields()
    return Markup(
        '<form method="get" action="/console/sagas" class="filters card" role="search">'
        f'<label>Search <input type="search" name="q" value="{e(f["q"])}" '
        'placeholder="saga id or business key"></label>'
        f'<label>Saga <select name="saga">{options(names, query.saga)}</select></label>'
        f'<label>State <select name="state">{options(STATES, query.state)}</select></label>'
        f'<label>In its state since <input name="since" value="{e(f["since"])}" placeholder="1h or 2026-01-31T12:00" size="14"></label>'
        f'<label>until <input name="until" value="{e(f["until"])}" placeholder="date/time" size="14"></label>'
        f'<label>Where <input name="where" value="{e(f["where"])}" placeholder="customer=cus-1" size="16"></label>'
        '<button type="submit">Filter</button>'
        f"{link(url('sagas'), 'Clear', 'quiet')}"
        '<label class="live"><input type="checkbox" id="live" checked> live</label>'
        "</form>"
    )


def _results(query: ListQuery, result: Page) -> Markup:
    rows = [
        [
            link(instance_url(s), s.saga_id, "mono"),
            link(url(f"definitions/{seg(s.saga_name)}"), f"{s.saga_name} v{s.saga_version}"),
            badge(s.status.value),
            when(s.started_at),
            when(s.updated_at),
            e(" ".join(f"{k}={v}" for k, v in sorted(s.search.items()))),
            e(": ".join(filter(None, [s.failure_step, s.failure_reason]))),
        ]
        for s in result.items
    ]
    headers = ["saga id", "saga", "state", "started", "in this state since", "search", "failure"]
    shown = (
        table(headers, rows, "list")
        if rows
        else Markup('<p class="empty">No instance matches these filters.</p>')
    )
    pager = []
    if query.cursor:
        pager.append(link(url("sagas", query.fields()), "« newest", "button quiet"))
    if result.next_cursor:
        pager.append(
            link(
                url("sagas", {**query.fields(), "cursor": result.next_cursor}),
                "older »",
                "button quiet",
            )
        )
    bulk = ""
    if query.saga and query.state and rows:
        where = {"saga": query.saga, "state": query.state}
        offered = [a for a in ACTIONS if query.state in OFFERED[a]]
        buttons = [
            link(
                url(f"bulk/{a}", where),
                f"{a.capitalize()} all {query.state} {query.saga} sagas…",
                "button",
            )
            for a in offered
        ]
        bulk = f'<p class="bulk">{join(buttons, " ")}</p>' if buttons else ""
    return Markup(
        f'<section id="results" data-live>{shown}<nav class="pager">{join(pager, " ")}</nav>{bulk}'
        f'<p class="hint">Showing {len(rows)} instance(s), newest first.</p></section>'
    )


# -- one instance ---------------------------------------------------------------------------


async def _load(request: web.Request) -> tuple[InstanceState, dict[str, str]] | web.Response:
    name, saga_id = request.match_info["name"], request.match_info["saga_id"]
    record = await find_record(store_of(request), saga_id, name)
    if record is None:
        return error_page(request, 404, "Not found", f"no instance {saga_id!r} of saga {name!r}")
    return record.state, record.trace


async def instance(request: web.Request) -> web.Response:
    loaded = await _load(request)
    if isinstance(loaded, web.Response):
        return loaded
    state, trace = loaded
    definition = engine_of(request).catalog.get(state.saga_name, state.saga_version)
    diagram = (
        Markup(
            f'<pre class="mermaid" aria-label="diagram">{e(coloured_diagram(definition, state))}</pre>'
        )
        if definition is not None
        else notice(f"{state.saga_name} v{state.saga_version} is not loaded here", ok=False)
    )
    body = join(
        [
            _summary(state, trace_id_of(trace), settings_of(request).trace_url),
            _family(definition, state),
            _actions(state),
            signals.signal_form(request, definition, state),
            Markup('<section class="card"><h2>Diagram</h2>'),
            legend(),
            diagram,
            Markup("</section>"),
            _timeline(state),
            _data(state),
        ]
    )
    return html_response(request, page(f"{state.saga_name} {state.saga_id}", body, "sagas"))


def _summary(state: InstanceState, trace_id: str | None, trace_url: str | None) -> Markup:
    end = state.finished_at
    took = format_offset(end - state.started_at) if end else ""
    facts = [
        ("State", badge(state.status.value)),
        (
            "Saga",
            link(
                url(f"definitions/{seg(state.saga_name)}"),
                f"{state.saga_name} v{state.saga_version}",
            ),
        ),
        ("Saga id", Markup(f'<span class="mono">{e(state.saga_id)}</span>')),
        ("Started", when(state.started_at)),
        ("Finished", join([when(end), Markup(f" ({e(took)})" if took else "")])),
        ("Updated", when(state.updated_at)),
    ]
    if state.failure_step or state.failure_reason:
        failure = f"{state.failure_step or ''}: {state.failure_reason or ''}".strip(": ")
        facts.append(("Failure", Markup(f'<span class="failure">{e(failure)}</span>')))
    if trace_id:
        shown: Markup = Markup(f'<span class="mono">{e(trace_id)}</span>')
        if trace_url:
            shown = link(trace_url.replace("{trace_id}", trace_id), trace_id, "mono trace")
        facts.append(("Trace", shown))
    rows = "".join(f"<dt>{e(k)}</dt><dd>{v}</dd>" for k, v in facts)
    return Markup(f'<dl class="facts card">{rows}</dl>')


def _family(definition: SagaDefinition | None, state: InstanceState) -> Markup:
    """Child sagas link both ways: to the parent's instance, and to each started child."""
    facts = []
    parent = state.parent
    if parent is not None:
        target = url(f"sagas/{seg(parent.saga)}/{seg(parent.saga_id)}")
        facts.append(
            (
                "Parent",
                link(target, f"{parent.saga} {parent.saga_id} (step {parent.step})", "parent"),
            )
        )
    for step in definition.steps if definition is not None else ():
        s = state.steps.get(step.name)
        if step.saga is None or s is None or s.attempt == 0:
            continue
        child = child_saga_id(state.saga_id, step.name)
        target = url(f"sagas/{seg(step.saga)}/{seg(child)}")
        facts.append((f"Child of {step.name}", link(target, f"{step.saga} {child}", "child")))
    if not facts:
        return Markup("")
    rows = "".join(f"<dt>{e(k)}</dt><dd>{v}</dd>" for k, v in facts)
    return Markup(f'<dl class="facts card family">{rows}</dl>')


def _actions(state: InstanceState) -> Markup:
    offered = [a for a in ACTIONS if state.status in OFFERED[a]]
    if not offered:
        return Markup("")
    buttons = " ".join(
        link(f"{instance_url(state)}/{a}", a.capitalize() + "…", f"button act-{a}") for a in offered
    )
    return Markup(f'<p class="actions">Operator actions: {buttons}</p>')


def _timeline(state: InstanceState) -> Markup:
    rows = [
        [
            when(r.at),
            Markup(f'<span class="mono">{e(format_offset(r.since_start))}</span>'),
            Markup(f'<span class="kind k-{e(r.kind)}">{e(r.kind)}</span>'),
            Markup(f'<span class="mono">{e(r.event)}</span>'),
            e(r.step),
            e(r.attempt),
            e(r.detail),
        ]
        for r in timeline(state)
    ]
    headers = ["time (UTC)", "since start", "kind", "event", "step", "attempt", "detail"]
    return Markup(
        f'<section class="card"><h2>Timeline</h2>{table(headers, rows, "timeline")}</section>'
    )


def _data(state: InstanceState) -> Markup:
    steps = [
        [
            e(name),
            Markup(f'<span class="badge st-{e(s.status.value)}">{e(s.status.value)}</span>'),
            e(s.attempt),
            e(s.reason),
            e(s.compensation.value if s.compensation.value != "none" else ""),
            e(s.compensation_reason),
        ]
        for name, s in state.steps.items()
    ]
    kept = json.dumps(state.context, indent=2, sort_keys=True, default=str)
    return Markup(
        '<section class="card"><h2>Steps</h2>'
        f"{table(['step', 'state', 'attempts', 'reason', 'compensation', 'compensation reason'], steps)}"
        f'<h2>Kept data</h2><pre class="data">{e(kept)}</pre></section>'
    )


# -- operator actions -----------------------------------------------------------------------


def _action_of(request: web.Request) -> str:
    action = request.match_info["action"]
    if action not in ACTIONS:
        raise web.HTTPNotFound(text=f"unknown action {action!r}")
    return action


def _reason_form(
    request: web.Request, action: str, target: str, hidden: Markup, back: str
) -> Markup:
    return Markup(
        f'<form method="post" action="{e(target)}" class="card confirm">'
        f"{csrf_field(auth.csrf_token(request))}{hidden}"
        "<label>Reason (kept in the log and, for abort, in the saga's history) "
        '<input name="reason" required maxlength="500" size="60"></label>'
        f'<button type="submit" class="act-{e(action)}">Confirm {e(action)}</button> '
        f"{link(back, 'Cancel', 'quiet')}"
        "</form>"
    )


async def confirm_action(request: web.Request) -> web.Response:
    action = _action_of(request)
    loaded = await _load(request)
    if isinstance(loaded, web.Response):
        return loaded
    state, _ = loaded
    body = join(
        [
            Markup(
                f"<p>{e(action.capitalize())} saga <b class=mono>{e(state.saga_id)}</b> "
                f"({e(state.saga_name)}), now {badge(state.status.value)}: "
                f"{e(EXPLAIN[action])}.</p>"
            ),
            _reason_form(request, action, request.path, Markup(""), instance_url(state)),
        ]
    )
    return html_response(request, page(f"{action.capitalize()} {state.saga_id}?", body, "sagas"))


async def _act(
    request: web.Request, name: str, saga_id: str, action: str, reason: str
) -> tuple[bool, str]:
    ask = ActionRequest(
        action=action, saga_id=saga_id, name=name, reason=reason or None, actor="console"
    )
    result = await engine_of(request).act(saga_id, name, ask.event("console"), None)
    log.info("console: %s on %s/%s (reason: %s): %s", action, name, saga_id, reason, result.message)
    return result.ok, result.message + (f"; now {result.status}" if result.status else "")


async def do_action(request: web.Request) -> web.Response:
    action = _action_of(request)
    fields = await posted(request)
    reason = fields.get("reason", "").strip()
    name, saga_id = request.match_info["name"], request.match_info["saga_id"]
    if not reason:
        return error_page(request, 400, "Reason needed", "give a reason for the action")
    ok, message = await _act(request, name, saga_id, action, reason)
    back = url(f"sagas/{seg(name)}/{seg(saga_id)}")
    body = Markup(f"<p>{link(back, 'Back to the instance', 'button')}</p>")
    title = f"{action.capitalize()} {saga_id}"
    return html_response(
        request, page(title, body, "sagas", notice(f"{action}: {message}", ok)), 200 if ok else 409
    )


async def _bulk_targets(request: web.Request, params: dict[str, str]) -> list[SagaSummary]:
    names = engine_of(request).catalog.names()
    query, problems = parse_query(params, names, datetime.now(UTC))
    if problems or not query.saga or not query.state:
        raise web.HTTPBadRequest(
            text="bulk actions need a saga and a state: " + "; ".join(problems)
        )
    result = await list_page(
        store_of(request), ListQuery(saga=query.saga, state=query.state, limit=BULK_LIMIT)
    )
    return result.items


async def confirm_bulk(request: web.Request) -> web.Response:
    action = _action_of(request)
    targets = await _bulk_targets(request, dict(request.query))
    saga, state = request.query["saga"], request.query["state"]
    listing = "".join(f"<li class=mono>{e(s.saga_id)}</li>" for s in targets)
    hidden = join(
        [
            Markup(f'<input type="hidden" name="saga" value="{e(saga)}">'),
            Markup(f'<input type="hidden" name="state" value="{e(state)}">'),
            *(Markup(f'<input type="hidden" name="id" value="{e(s.saga_id)}">') for s in targets),
        ]
    )
    body = join(
        [
            Markup(
                f"<p>{e(action.capitalize())} these {len(targets)} {e(saga)} instance(s) "
                f"that are {badge(state)}: {e(EXPLAIN[action])}.</p><ul class=targets>{listing}</ul>"
            ),
            _reason_form(
                request, action, request.path, hidden, url("sagas", {"saga": saga, "state": state})
            ),
        ]
    )
    return html_response(
        request, page(f"{action.capitalize()} {len(targets)} sagas?", body, "sagas")
    )


async def do_bulk(request: web.Request) -> web.Response:
    """Acts on the instances listed on the confirmation page (exactly what the operator saw)."""
    action = _action_of(request)
    fields = await posted(request)
    reason = fields.get("reason", "").strip()
    if not reason:
        return error_page(request, 400, "Reason needed", "give a reason for the action")
    form = await request.post()
    saga = fields.get("saga", "")
    if saga not in engine_of(request).catalog.names():
        raise web.HTTPBadRequest(text=f"no saga named {saga!r}")
    ids = [v for v in form.getall("id", []) if isinstance(v, str)][:BULK_LIMIT]
    rows = []
    done = 0
    for saga_id in ids:
        ok, message = await _act(request, saga, saga_id, action, reason)
        done += ok
        rows.append(
            [
                link(url(f"sagas/{seg(saga)}/{seg(saga_id)}"), saga_id, "mono"),
                e("ok" if ok else "refused"),
                e(message),
            ]
        )
    body = join(
        [
            table(["saga id", "result", "message"], rows),
            Markup(f"<p>{link(url('sagas', {'saga': saga}), 'Back to the list', 'button')}</p>"),
        ]
    )
    summary = notice(f"{action}: {done} of {len(ids)} applied", ok=done == len(ids))
    return html_response(
        request, page(f"{action.capitalize()} {saga} sagas", body, "sagas", summary)
    )
