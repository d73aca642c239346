"""Who may use the console, and proof that a form was posted from the console itself.

Sign-in: the admin API's bearer token, given as ``Authorization: Bearer``, typed into the
login form, or passed once as ``?token=``; the last two set an HttpOnly, SameSite=Strict
cookie holding an HMAC of the token (never the token itself) and redirect to a URL
without it. With no token configured the console is open, like the API (loopback only
by default).

Forms: every POST needs (1) an ``Origin`` (or, without one, ``Referer``) on this host,
when the browser sends one, and (2) a ``csrf`` field equal to the ``saga_csrf`` cookie
(double submit: a cross-site page can neither read that cookie nor set it).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from urllib.parse import urlsplit

from aiohttp import web

from saga.protocol import HEADER_AUTHORIZATION

SESSION_COOKIE = "saga_session"
CSRF_COOKIE = "saga_csrf"
COOKIE_PATH = "/console"
NEW_CSRF = web.RequestKey("csrf_new", str)
OPEN = ("/console/login", "/console/static/")
"""Paths served without signing in (the login form and the vendored files)."""


def session_value(token: str) -> str:
    return hmac.new(token.encode(), b"saga-console-session", hashlib.sha256).hexdigest()


def signed_in(request: web.Request, token: str | None) -> bool:
    if not token:
        return True
    given = request.headers.get(HEADER_AUTHORIZATION, "")
    if hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
        return True
    cookie = request.cookies.get(SESSION_COOKIE, "")
    return hmac.compare_digest(cookie.encode(), session_value(token).encode())


def token_matches(given: str, token: str) -> bool:
    return hmac.compare_digest(given.encode(), token.encode())


def set_session(response: web.StreamResponse, token: str, secure: bool) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        session_value(token),
        path=COOKIE_PATH,
        httponly=True,
        samesite="Strict",
        secure=secure,
    )


def csrf_token(request: web.Request) -> str:
    """The request's CSRF token: its cookie's, or a new one that :func:`keep_csrf` sets."""
    known = request.cookies.get(CSRF_COOKIE, "")
    if len(known) >= 32:
        return known
    if NEW_CSRF not in request:
        request[NEW_CSRF] = secrets.token_urlsafe(32)
    return request[NEW_CSRF]


def keep_csrf(request: web.Request, response: web.StreamResponse) -> None:
    fresh = request.get(NEW_CSRF)
    if fresh is not None:
        response.set_cookie(
            CSRF_COOKIE,
            fresh,
            path=COOKIE_PATH,
            httponly=True,
            samesite="Strict",
            secure=request.secure,
        )


def same_origin(request: web.Request) -> bool:
    """The ``Origin`` (else ``Referer``) names this host, or the client sent neither."""
    source = request.headers.get("Origin") or request.headers.get("Referer")
    if source is None:
        return True
    if source == "null":
        return False
    parts = urlsplit(source)
    return parts.netloc == request.host and parts.scheme == request.scheme


def csrf_ok(request: web.Request, posted: str) -> bool:
    cookie = request.cookies.get(CSRF_COOKIE, "")
    return (
        same_origin(request)
        and len(cookie) >= 32
        and hmac.compare_digest(cookie.encode(), posted.encode())
    )
