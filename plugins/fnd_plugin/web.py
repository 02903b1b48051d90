"""Shared page plumbing: templates, formatting filters, links that keep their filters."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from fnd_plugin.backend import Backend

TEMPLATES = Jinja2Templates(directory=str(Path(__file__).with_name("templates")))

# Pages may load nothing from elsewhere: no CDN, no script at all.
PAGE_CSP = (
    "default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'; "
    "form-action 'self'; frame-ancestors 'self'; base-uri 'none'"
)


def backend(request: Request) -> Backend:
    """FastAPI dependency: the app's :class:`Backend`."""
    return request.app.state.backend


def base_path(request: Request) -> str:
    """Where the app is mounted (``/fnd``, or ``/airflow/fnd`` under a base URL)."""
    return request.scope.get("root_path", "").rstrip("/")


def link(request: Request, path: str, **query: Any) -> str:
    """An absolute path within the app, with the non-empty query parameters given."""
    params = {k: v for k, v in query.items() if v is not None and v != ""}
    url = f"{base_path(request)}/{path.lstrip('/')}"
    return f"{url}?{urlencode(params)}" if params else url


def here(request: Request, **changes: Any) -> str:
    """This page's URL with some query parameters changed (None removes one)."""
    params = {**dict(request.query_params), **changes}
    params = {k: v for k, v in params.items() if v is not None and v != ""}
    path = request.url.path  # the full path, mount prefix included
    return f"{path}?{urlencode(params)}" if params else path


def render(request: Request, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    """A page from ``templates/``, with ``base`` (the app's path) and the helpers."""
    return TEMPLATES.TemplateResponse(
        request,
        template,
        {"base": base_path(request), "link": link, "here": here, **context},
        status_code=status_code,
        headers={"Content-Security-Policy": PAGE_CSP},
    )


def fmt_time(value: datetime | date | None) -> str:
    if value is None:
        return "—"
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return value.isoformat()


def fmt_num(value: float | int | None, digits: int = 3) -> str:
    if value is None:
        return "—"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:.{digits}f}"


def fmt_pct(value: float | None) -> str:
    return "—" if value is None else f"{value:.1%}"


TEMPLATES.env.filters.update(time=fmt_time, num=fmt_num, pct=fmt_pct)
