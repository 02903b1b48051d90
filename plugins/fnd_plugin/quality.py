"""Data quality: every GX validation run, each batch's quarantine, and the Data Docs pages."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, Response

from fnd_core.observe import monitoring, monitoring_quality
from fnd_plugin import ASSETS_PREFIX, URL_PREFIX, docs_offline, files
from fnd_plugin.backend import Backend
from fnd_plugin.web import backend, base_path, link, render

router = APIRouter()

BackendDep = Annotated[Backend, Depends(backend)]
Limit = Annotated[int, Query(ge=1, le=monitoring.MAX_LIMIT)]
Offset = Annotated[int, Query(ge=0)]

# GX's pages load their styling and scripts from the plugin (docs_offline), nothing from
# elsewhere. They need inline scripts (tables, charts), so they run sandboxed: an origin of
# their own (no Airflow cookie, no same-origin API call), no network requests, no forms.
DOCS_CSP = (
    "default-src 'none'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self'; connect-src 'none'; form-action 'none'; "
    "base-uri 'none'; frame-ancestors 'self'; sandbox allow-scripts allow-popups"
)
DOCS_HEADERS = {"Content-Security-Policy": DOCS_CSP, "X-Content-Type-Options": "nosniff"}


def _validations(
    backend: Backend,
    *,
    run_id: str | None,
    suite: str | None,
    batch_id: int | None,
    success: bool | None,
    limit: int,
    offset: int,
) -> monitoring.Page:
    page = monitoring_quality.validation_runs(
        backend.engine,
        run_id=run_id,
        suite=suite,
        batch_id=batch_id,
        success=success,
        limit=limit,
        offset=offset,
    )
    for item in page.items:
        item["data_docs_path"] = monitoring_quality.data_docs_relative_path(
            item["data_docs_uri"], backend.settings.data_docs
        )
        item["failed_expectation_names"] = monitoring_quality.failed_expectation_names(
            item["failed_expectations"]
        )
    return page


@router.get("/data-quality", response_class=HTMLResponse)
def data_quality_page(
    request: Request,
    backend: BackendDep,
    run_id: str | None = None,
    suite: str | None = None,
    batch_id: int | None = None,
    success: bool | None = None,
    limit: Limit = 25,
    offset: Offset = 0,
) -> HTMLResponse:
    """Validation runs, newest first, with failed expectations and quarantine by rule."""
    page = _validations(
        backend,
        run_id=run_id,
        suite=suite,
        batch_id=batch_id,
        success=success,
        limit=limit,
        offset=offset,
    )
    return render(
        request,
        "data_quality.html",
        page=page,
        filters={"run_id": run_id, "suite": suite, "batch_id": batch_id, "success": success},
    )


@router.get("/data-quality/batches/{batch_id}", response_class=HTMLResponse)
def batch_page(
    request: Request,
    backend: BackendDep,
    batch_id: int,
    rule: str | None = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> HTMLResponse:
    """One landed file: its counts, quarantine rules, and the raw quarantined rows."""
    batch = _batch_or_404(backend, batch_id)
    return render(
        request,
        "batch.html",
        batch=batch,
        rules=monitoring_quality.quarantine_rules(backend.engine, batch_id),
        rows=monitoring_quality.quarantined_rows(
            backend.engine, batch_id, rule=rule, limit=limit, offset=offset
        ),
        validations=_validations(
            backend,
            run_id=None,
            suite=None,
            batch_id=batch_id,
            success=None,
            limit=10,
            offset=0,
        ).items,
        rule=rule,
    )


@router.get("/data-docs/{path:path}", response_model=None)
def data_docs(request: Request, backend: BackendDep, path: str) -> Response:
    """A file of the GX Data Docs site (pages, their images), from FND_DATA_DOCS_URI when
    pages are published there, else FND_DATA_DOCS_DIR; pages load their CDN assets from the
    plugin instead."""
    published = backend.settings.data_docs_uri
    try:
        if published:
            data, name = files.published_data_docs(published, path)
        else:
            target = files.data_docs_file(backend.settings.data_docs, path)
            data, name = target.read_bytes(), target.name
    except files.NotServable as exc:
        raise HTTPException(404, str(exc)) from exc
    if not name.endswith(".html"):
        return Response(data, media_type=files.media_type(Path(name)), headers=DOCS_HEADERS)
    assets_url = base_path(request).removesuffix(URL_PREFIX) + ASSETS_PREFIX
    page = docs_offline.offline_page(data.decode("utf-8", errors="replace"), assets_url=assets_url)
    return HTMLResponse(page, headers=DOCS_HEADERS)


@router.get("/api/validations")
def validations_api(
    request: Request,
    backend: BackendDep,
    run_id: str | None = None,
    suite: str | None = None,
    batch_id: int | None = None,
    success: bool | None = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> dict[str, Any]:
    """Validation runs as JSON (the data of the data-quality page), newest first."""
    page = _validations(
        backend,
        run_id=run_id,
        suite=suite,
        batch_id=batch_id,
        success=success,
        limit=limit,
        offset=offset,
    )
    for item in page.items:
        rel = item.pop("data_docs_path")
        item["data_docs_url"] = link(request, f"data-docs/{rel}") if rel else None
    return page.to_json()


@router.get("/api/batches/{batch_id}")
def batch_api(backend: BackendDep, batch_id: int) -> dict[str, Any]:
    """One ingest batch with its quarantine counts by rule."""
    batch = _batch_or_404(backend, batch_id)
    return {
        **batch,
        "quarantine_rules": monitoring_quality.quarantine_rules(backend.engine, batch_id),
    }


@router.get("/api/batches/{batch_id}/quarantine")
def quarantine_api(
    backend: BackendDep,
    batch_id: int,
    rule: str | None = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> dict[str, Any]:
    """A batch's quarantined rows, verbatim, in file order."""
    _batch_or_404(backend, batch_id)
    page = monitoring_quality.quarantined_rows(
        backend.engine, batch_id, rule=rule, limit=limit, offset=offset
    )
    return page.to_json()


def _batch_or_404(backend: Backend, batch_id: int) -> dict[str, Any]:
    batch = monitoring_quality.ingest_batch(backend.engine, batch_id)
    if batch is None:
        raise HTTPException(404, f"no ingest batch {batch_id}")
    return batch
