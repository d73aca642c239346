"""HTML building blocks of the console: every value passes through :func:`e` (``html.escape``).

Templates are plain f-strings; a helper that takes text escapes it, a helper that takes
``Markup`` (already-built HTML) does not. Keeping the two apart by type is what makes
"escape everywhere" checkable by mypy rather than by reading.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import NewType
from urllib.parse import quote, urlencode

from saga.core.state import Status

Markup = NewType("Markup", str)
"""HTML that is safe to insert as is: built from escaped parts."""

STATES = tuple(s.value for s in Status)
NAV = (("Instances", "sagas"), ("Dead letters", "dlq"), ("Definitions", "definitions"))


def e(value: object) -> Markup:
    """Escape any value for HTML text and attribute values (quotes included)."""
    return Markup(html.escape("" if value is None else str(value), quote=True))


def join(parts: Iterable[Markup], sep: str = "") -> Markup:
    return Markup(sep.join(parts))


def seg(value: str) -> str:
    """One URL path segment (a saga id may hold ``/``, ``?`` or ``#``)."""
    return quote(value, safe="")


def url(path: str, query: Mapping[str, str | int | None] | None = None) -> str:
    """A console URL (``path`` relative to ``/console/``) with the non-empty query fields."""
    kept = {k: str(v) for k, v in (query or {}).items() if v not in (None, "")}
    return "/console/" + path + ("?" + urlencode(kept) if kept else "")


def when(value: datetime | None) -> Markup:
    """A UTC timestamp to the millisecond, in a ``<time>`` element with the ISO form."""
    if value is None:
        return Markup("")
    value = value.astimezone(UTC)
    shown = value.strftime("%Y-%m-%d %H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"
    return Markup(f'<time datetime="{e(value.isoformat())}">{e(shown)}</time>')


def badge(state: str) -> Markup:
    return Markup(f'<span class="badge s-{e(state)}">{e(state)}</span>')


def link(href: str, text: object, cls: str = "") -> Markup:
    attr = f' class="{e(cls)}"' if cls else ""
    return Markup(f'<a href="{e(href)}"{attr}>{e(text)}</a>')


def table(headers: Iterable[str], rows: Iterable[Iterable[Markup]], cls: str = "") -> Markup:
    head = "".join(f"<th>{e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return Markup(
        f'<table class="{e(cls)}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'
    )


def csrf_field(token: str) -> Markup:
    return Markup(f'<input type="hidden" name="csrf" value="{e(token)}">')


def options(values: Iterable[str], selected: str | None, blank: str = "any") -> Markup:
    items = [f'<option value="">{e(blank)}</option>']
    for value in values:
        mark = " selected" if value == selected else ""
        items.append(f'<option value="{e(value)}"{mark}>{e(value)}</option>')
    return Markup("".join(items))


def legend() -> Markup:
    """The colours of instance and step states, as shown in lists and diagrams."""
    steps = ("pending", "active", "succeeded", "failed", "compensated", "skipped")
    return Markup(
        '<div class="legend"><span>Instances:</span> '
        + " ".join(badge(s) for s in STATES)
        + " <span>Steps:</span> "
        + " ".join(f'<span class="badge st-{e(s)}">{e(s)}</span>' for s in steps)
        + "</div>"
    )


def page(title: str, body: Markup, section: str = "", notice: Markup | None = None) -> str:
    """The whole document: header with navigation, an optional notice, the body."""
    nav = "".join(
        f'<a href="/console/{e(path)}"{" class=current" if path == section else ""}>{e(label)}</a>'
        for label, path in NAV
    )
    shown = notice or ""
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{e(title)} · saga console</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="/console/static/console.css">
<script src="/console/static/console.js" defer></script>
</head>
<body>
<header><a class="brand" href="/console/">saga console</a><nav>{nav}</nav></header>
<main>
{shown}
<h1>{e(title)}</h1>
{body}
</main>
</body>
</html>
"""


def notice(text: str, ok: bool = True) -> Markup:
    return Markup(f'<p class="notice {"ok" if ok else "bad"}" role="status">{e(text)}</p>')
