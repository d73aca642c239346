"""Dead-letter pages: the list (by code), one letter's headers and body, replay and purge.

Replay and purge reuse :mod:`saga.nats.dlq`, the same functions as ``saga dlq``.
"""

from __future__ import annotations

import json
import logging

from aiohttp import web

from saga.console import auth
from saga.console.app import engine_of, error_page, html_response, posted
from saga.console.html import (
    Markup,
    csrf_field,
    e,
    join,
    link,
    notice,
    options,
    page,
    seg,
    table,
    url,
    when,
)
from saga.nats.dlq import (
    DeadLetter,
    DeadLetterCode,
    DeadLetterError,
    get_dead_letter,
    list_dead_letters,
    purge_dead_letter,
    replay,
)

log = logging.getLogger("saga.console")
SHOWN = 200
DOING = {
    "replay": "publishes the original message again on its subject, then deletes the dead letter",
    "purge": "deletes the dead letter for good",
}


def routes(router: web.UrlDispatcher) -> None:
    router.add_get("/dlq", letters)
    router.add_get("/dlq/{sequence:\\d+}", letter)
    router.add_get("/dlq/{sequence:\\d+}/{action:replay|purge}", confirm)
    router.add_post("/dlq/{sequence:\\d+}/{action:replay|purge}", act)


def _saga_link(d: DeadLetter) -> Markup:
    if d.saga_id and d.saga_name:
        return link(url(f"sagas/{seg(d.saga_name)}/{seg(d.saga_id)}"), d.saga_id, "mono")
    return e(d.saga_id)


async def letters(request: web.Request) -> web.Response:
    engine = engine_of(request)
    code = request.query.get("code") or None
    found = await list_dead_letters(engine.js, engine.settings.topology, code, limit=SHOWN)
    rows = [
        [
            link(url(f"dlq/{d.sequence}"), d.sequence, "mono"),
            when(d.time),
            Markup(f'<span class="badge code">{e(d.code)}</span>'),
            e(d.reason),
            Markup(f'<span class="mono">{e(d.subject)}</span>'),
            _saga_link(d),
        ]
        for d in found
    ]
    codes = [c.value for c in DeadLetterCode]
    form = Markup(
        '<form method="get" action="/console/dlq" class="filters card">'
        f'<label>Code <select name="code">{options(codes, code)}</select></label>'
        '<button type="submit">Filter</button></form>'
    )
    shown = (
        table(["#", "time", "code", "reason", "subject", "saga id"], rows, "list")
        if rows
        else Markup('<p class="empty">No dead letters.</p>')
    )
    more = f"<p class=hint>The oldest {SHOWN} are shown.</p>" if len(found) == SHOWN else ""
    body = join([form, Markup(f'<section id="results" data-live>{shown}{more}</section>')])
    return html_response(request, page("Dead letters", body, "dlq"))


async def _get(request: web.Request) -> DeadLetter:
    engine = engine_of(request)
    sequence = int(request.match_info["sequence"])
    try:
        return await get_dead_letter(engine.js, sequence, engine.settings.topology)
    except DeadLetterError as exc:
        raise web.HTTPNotFound(text=str(exc)) from None


def _body(data: bytes) -> str:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return f"({len(data)} bytes, not UTF-8) {data[:2048]!r}"
    try:
        return json.dumps(json.loads(text), indent=2)
    except ValueError:
        return text


async def letter(request: web.Request) -> web.Response:
    d = await _get(request)
    headers = table(
        ["header", "value"],
        [[Markup(f'<span class="mono">{e(k)}</span>'), e(v)] for k, v in sorted(d.headers.items())],
    )
    buttons = " ".join(
        link(url(f"dlq/{d.sequence}/{a}"), a.capitalize() + "…", f"button act-{a}") for a in DOING
    )
    body = Markup(
        f'<dl class="facts card"><dt>Code</dt><dd><span class="badge code">{e(d.code)}</span></dd>'
        f"<dt>Reason</dt><dd>{e(d.reason)}</dd><dt>Subject</dt><dd class=mono>{e(d.subject)}</dd>"
        f"<dt>Origin</dt><dd class=mono>{e(d.origin)}</dd><dt>Consumer</dt><dd>{e(d.consumer)}</dd>"
        f"<dt>Saga</dt><dd>{e(d.saga_name)} {_saga_link(d)}</dd><dt>Time</dt><dd>{when(d.time)}</dd></dl>"
        f'<p class="actions">{buttons}</p>'
        f'<section class="card"><h2>Headers</h2>{headers}'
        f'<h2>Body</h2><pre class="data">{e(_body(d.data))}</pre></section>'
    )
    return html_response(request, page(f"Dead letter {d.sequence}", body, "dlq"))


async def confirm(request: web.Request) -> web.Response:
    d = await _get(request)
    action = request.match_info["action"]
    body = Markup(
        f"<p>{e(action.capitalize())} dead letter {d.sequence} ({e(d.code)}, "
        f"<span class=mono>{e(d.subject)}</span>): {e(DOING[action])}.</p>"
        f'<form method="post" action="{e(request.path)}" class="card confirm">'
        f"{csrf_field(auth.csrf_token(request))}"
        f'<button type="submit" class="act-{e(action)}">Confirm {e(action)}</button> '
        f"{link(url(f'dlq/{d.sequence}'), 'Cancel', 'quiet')}</form>"
    )
    return html_response(
        request, page(f"{action.capitalize()} dead letter {d.sequence}?", body, "dlq")
    )


async def act(request: web.Request) -> web.Response:
    await posted(request)
    d = await _get(request)
    engine = engine_of(request)
    action = request.match_info["action"]
    try:
        if action == "replay":
            done = await replay(engine.js, d, engine.settings.topology)
            message = f"replayed onto {d.subject}" + (
                " (dropped by the server as a repeat)" if done.duplicate else ""
            )
        else:
            await purge_dead_letter(engine.js, d.sequence, engine.settings.topology)
            message = "purged"
    except DeadLetterError as exc:
        return error_page(request, 404, "Not found", str(exc))
    log.info("console: dead letter %d %s", d.sequence, message)
    body = Markup(f"<p>{link(url('dlq'), 'Back to the dead letters', 'button')}</p>")
    return html_response(
        request, page(f"Dead letter {d.sequence}", body, "dlq", notice(f"{d.sequence}: {message}"))
    )
