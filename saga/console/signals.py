"""The instance page's "Emit an event" form: an operator answers an observed step (a manual
approval), as ``saga emit`` does; the engine decides it, or refuses with the reason."""

from __future__ import annotations

import logging

from aiohttp import web

from saga import jsonwire
from saga.console import auth
from saga.console.app import engine_of, error_page, html_response, posted
from saga.console.html import Markup, csrf_field, e, link, notice, page, seg, url
from saga.core.state import InstanceState, Status, StepStatus
from saga.definition.model import SagaDefinition
from saga.engine.operator import EMIT, ActionRequest

log = logging.getLogger("saga.console")
WAITING = (StepStatus.PENDING, StepStatus.ACTIVE)
"""Steps an event can still answer (a pending observed step holds it as an early answer)."""


def routes(router: web.UrlDispatcher) -> None:
    router.add_post("/emit/{name}/{saga_id}", do_emit)


def emit_url(name: str, saga_id: str) -> str:
    return url(f"emit/{seg(name)}/{seg(saga_id)}")


def signal_form(
    request: web.Request, definition: SagaDefinition | None, state: InstanceState
) -> Markup:
    """The form, when a running instance has an observed step still waiting for its answer."""
    if definition is None or state.status is not Status.RUNNING:
        return Markup("")
    subjects = [
        (subject, f"{subject} ({'success' if ok else 'failure'} of {step.name})")
        for step in definition.steps
        if not step.driven and step.wait is None and state.steps[step.name].status in WAITING
        for ok, events in ((True, step.success), (False, step.failure))
        for subject in events
    ]
    if not subjects:
        return Markup("")
    choices = "".join(f'<option value="{e(s)}">{e(label)}</option>' for s, label in subjects)
    return Markup(
        f'<form method="post" action="{e(emit_url(state.saga_name, state.saga_id))}" '
        'class="card emit"><h2>Emit an event</h2>'
        f"{csrf_field(auth.csrf_token(request))}"
        f'<label>Event <select name="subject">{choices}</select></label> '
        '<label>Payload (JSON) <textarea name="data" rows="2" cols="40">{}</textarea></label> '
        '<label>Reason <input name="reason" required maxlength="500" size="40"></label> '
        '<button type="submit" class="act-emit">Emit</button>'
        '<p class="hint">Decided as if the step\'s service had sent it, and recorded with '
        "your reason (<code>saga emit</code> does the same).</p></form>"
    )


async def do_emit(request: web.Request) -> web.Response:
    fields = await posted(request)
    name, saga_id = request.match_info["name"], request.match_info["saga_id"]
    reason = fields.get("reason", "").strip()
    if not reason:
        return error_page(request, 400, "Reason needed", "give a reason for the event")
    try:
        data = jsonwire.loads(fields.get("data", "").strip() or "{}")
    except ValueError as exc:
        return error_page(request, 400, "Payload is not JSON", str(exc))
    if not isinstance(data, dict):
        return error_page(request, 400, "Payload is not an object", "give a JSON object")
    try:
        ask = ActionRequest(
            action=EMIT,
            saga_id=saga_id,
            name=name,
            reason=reason,
            actor="console",
            subject=fields.get("subject", ""),
            data=data,
        )
    except ValueError as exc:
        return error_page(request, 400, "Bad event", str(exc))
    result = await engine_of(request).act(saga_id, name, ask.event("console"), None)
    log.info("console: emit %s to %s/%s: %s", ask.subject, name, saga_id, result.message)
    message = result.message + (f"; now {result.status}" if result.status else "")
    back = url(f"sagas/{seg(name)}/{seg(saga_id)}")
    body = Markup(f"<p>{link(back, 'Back to the instance', 'button')}</p>")
    shown = notice(f"emit {ask.subject}: {message}", result.ok)
    status = 200 if result.ok else 409
    return html_response(request, page(f"Emit to {saga_id}", body, "sagas", shown), status)
