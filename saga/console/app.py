"""The console as an aiohttp sub-application mounted at ``/console/`` of the admin server.

It takes what it uses of the engine (:class:`~saga.engine.view.EngineView`): the store, the catalog, the
JetStream context, the topology and ``act`` (the operator path). Sign-in and CSRF rules
are in :mod:`saga.console.auth`; every response gets a strict Content-Security-Policy
(scripts only from ``/console/static/``, no inline script).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

from aiohttp import web
from aiohttp.typedefs import Handler
from nats.errors import Error as NatsError

from saga.console import auth
from saga.console.html import Markup, csrf_field, e, notice, page
from saga.engine.view import EngineView
from saga.errors import SagaError
from saga.store import InstanceStore

log = logging.getLogger("saga.console")
STATIC = Path(__file__).parent / "static"
PREFIX = "/console"
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
"""Mermaid styles its SVG with ``<style>`` elements, hence ``'unsafe-inline'`` for styles."""


@dataclass(frozen=True)
class ConsoleSettings:
    token: str | None = None
    """The admin API's bearer token; ``None`` leaves the console open (loopback by default)."""
    trace_url: str | None = None
    """Trace viewer URL with ``{trace_id}``, e.g. ``http://localhost:16686/trace/{trace_id}``."""

    @classmethod
    def from_env(cls, token: str | None) -> ConsoleSettings:
        template = os.environ.get("SAGA_TRACE_URL", "").strip() or None
        if template is not None and not (
            template.startswith(("http://", "https://")) and "{trace_id}" in template
        ):
            log.warning("SAGA_TRACE_URL ignored: it must be an http(s) URL with {trace_id}")
            template = None
        return cls(token=token, trace_url=template)


ENGINE: web.AppKey[EngineView] = web.AppKey("engine", EngineView)
SETTINGS = web.AppKey("settings", ConsoleSettings)


def engine_of(request: web.Request) -> EngineView:
    return request.config_dict[ENGINE]


def settings_of(request: web.Request) -> ConsoleSettings:
    return request.config_dict[SETTINGS]


def store_of(request: web.Request) -> InstanceStore:
    store = engine_of(request).store
    if store is None:
        raise web.HTTPServiceUnavailable(text="the engine has not started yet; try again shortly")
    return store


def html_response(request: web.Request, body: str, status: int = 200) -> web.Response:
    return web.Response(text=body, status=status, content_type="text/html", charset="utf-8")


def error_page(request: web.Request, status: int, title: str, message: str) -> web.Response:
    return html_response(request, page(title, notice(message, ok=False)), status)


async def posted(request: web.Request) -> dict[str, str]:
    """The form's fields, once its CSRF token is checked (403 otherwise)."""
    form = await request.post()
    fields = {k: v for k, v in form.items() if isinstance(v, str)}
    if not auth.csrf_ok(request, fields.get("csrf", "")):
        raise web.HTTPForbidden(
            text="refused: the form did not come from this console (CSRF check); reload the page"
        )
    return fields


def _redirect(target: str) -> web.Response:
    return web.Response(status=303, headers={"Location": target})


@web.middleware
async def _guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    token = settings_of(request).token
    open_path = request.path.startswith(auth.OPEN)
    given = request.query.get("token")
    if token and given is not None and request.method == "GET":
        if not auth.token_matches(given, token):
            return error_page(request, 401, "Sign in", "wrong token")
        rest = {k: v for k, v in request.query.items() if k != "token"}
        target = request.path + ("?" + urlencode(rest) if rest else "")
        response: web.StreamResponse = _redirect(target)
        auth.set_session(response, token, request.secure)
        return response
    if not open_path and not auth.signed_in(request, token):
        if request.method == "GET":
            return _redirect("/console/login?" + urlencode({"next": request.path_qs}))
        return error_page(request, 401, "Sign in", "sign in first")
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400 or exc.content_type == "text/html":
            raise
        response = error_page(request, exc.status, exc.reason, exc.text or exc.reason)
    except (NatsError, SagaError) as exc:
        log.warning("console page %s failed: %s: %s", request.path, type(exc).__name__, exc)
        response = error_page(
            request,
            503,
            "NATS did not answer",
            f"{type(exc).__name__}: {exc or 'no answer'}. If the engine's NATS user has "
            "restricted permissions, see 'The web console' in docs/operations.md.",
        )
    auth.keep_csrf(request, response)
    response.headers.setdefault("Content-Security-Policy", CSP)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    if not open_path:
        response.headers.setdefault("Cache-Control", "no-store")
    return response


def _safe_next(target: str | None) -> str:
    """Only a path inside the console: never another site."""
    if target and target.startswith(PREFIX + "/") and not target.startswith("//"):
        return target
    return PREFIX + "/"


async def login_form(request: web.Request) -> web.Response:
    if not settings_of(request).token:
        raise web.HTTPSeeOther(_safe_next(request.query.get("next")))
    return html_response(request, _login_page(request, None))


def _login_page(request: web.Request, problem: str | None) -> str:
    target = _safe_next(request.query.get("next"))
    body = Markup(
        f'<form method="post" action="/console/login?{e(urlencode({"next": target}))}" '
        'class="card login">'
        f"{csrf_field(auth.csrf_token(request))}"
        '<label>Admin token <input type="password" name="token" autocomplete="current-password" '
        "required autofocus></label>"
        '<button type="submit">Sign in</button>'
        "<p class=hint>The admin API's bearer token (<code>--admin-token</code> / "
        "<code>SAGA_ADMIN_TOKEN</code>).</p></form>"
    )
    return page("Sign in", body, notice=notice(problem, ok=False) if problem else None)


async def login(request: web.Request) -> web.Response:
    token = settings_of(request).token
    fields = await posted(request)
    if not token:
        raise web.HTTPSeeOther(_safe_next(request.query.get("next")))
    if not auth.token_matches(fields.get("token", ""), token):
        return html_response(request, _login_page(request, "wrong token"), 401)
    response = web.HTTPSeeOther(_safe_next(request.query.get("next")))
    auth.set_session(response, token, request.secure)
    raise response


def console_app(engine: EngineView, settings: ConsoleSettings) -> web.Application:
    from saga.console import dead_letters, definitions, instances

    app = web.Application(middlewares=[_guard])
    app[ENGINE] = engine
    app[SETTINGS] = settings
    app.router.add_get("/login", login_form)
    app.router.add_post("/login", login)
    app.router.add_static("/static/", STATIC)
    instances.routes(app.router)
    dead_letters.routes(app.router)
    definitions.routes(app.router)
    return app


def is_console_path(path: str) -> bool:
    return path == PREFIX or path.startswith(PREFIX + "/")


def mount_console(app: web.Application, engine: EngineView, token: str | None) -> None:
    """Serve the console at ``/console/`` of the admin server's ``app``."""

    async def slash(_: web.Request) -> web.Response:
        raise web.HTTPMovedPermanently(PREFIX + "/")

    app.router.add_get(PREFIX, slash)
    app.add_subapp(PREFIX + "/", console_app(engine, ConsoleSettings.from_env(token)))
