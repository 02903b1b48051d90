"""Models: the leaderboard with gate decisions, each version's training plots, how it does
in production (realized against the label-free estimate, and its calibration), and the newest
model searches (their candidates, and the estimate against each parameter they varied)."""

from __future__ import annotations

import logging
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, Response

from fnd_core.observe import monitoring, monitoring_models
from fnd_plugin import charts, files
from fnd_plugin.backend import Backend
from fnd_plugin.web import backend, link, render

log = logging.getLogger(__name__)
router = APIRouter()

BackendDep = Annotated[Backend, Depends(backend)]
# Plots shown first (fnd_core/model/train/plots.py names them); any other plot follows, by name.
PLOT_ORDER = ("training_curves.png", "roc_test.png", "confusion_test.png", "roc_val.png")
Limit = Annotated[int, Query(ge=1, le=monitoring.MAX_LIMIT)]
Offset = Annotated[int, Query(ge=0)]


def _leaderboard(
    request: Request,
    backend: Backend,
    *,
    run_id: str | None,
    version: str | None,
    limit: int,
    offset: int,
) -> monitoring.Page:
    """The leaderboard page, each version with the URLs of its plots (or why there are none)."""
    page = monitoring_models.model_leaderboard(
        backend.engine, run_id=run_id, version=version, limit=limit, offset=offset
    )
    for item in page.items:
        item["plots"], item["plots_error"] = [], None
        if not item["artifact_uri"] or not item["artifact_sha256"]:
            continue
        try:
            names = files.plot_names(
                item["artifact_uri"], item["artifact_sha256"], backend.settings.gcs_endpoint
            )
        except Exception as exc:  # noqa: BLE001 — one unreadable artifact (gone, no access,
            # no credentials) must not sink the page: its row says why it has no plots
            log.warning("plots of %s: %s", item["version"], exc)
            item["plots_error"] = str(exc)
            continue
        item["plots"] = [
            {"name": n, "url": link(request, f"models/{quote(item['version'], safe='')}/plots/{n}")}
            for n in sorted(names, key=_plot_rank)
        ]
    return page


def _plot_rank(name: str) -> tuple[int, str]:
    return (PLOT_ORDER.index(name) if name in PLOT_ORDER else len(PLOT_ORDER), name)


@router.get("/models", response_class=HTMLResponse)
def models_page(
    request: Request,
    backend: BackendDep,
    run_id: str | None = None,
    version: str | None = None,
    limit: Limit = 20,
    offset: Offset = 0,
) -> HTMLResponse:
    """Every model version, newest first: metrics, gate decision and reason, plots."""
    page = _leaderboard(
        request, backend, run_id=run_id, version=version, limit=limit, offset=offset
    )
    champions = monitoring_models.champions(backend.engine)
    # The version whose plots are shown: the one asked for, else the champion, else the newest.
    focus = next((m for m in page.items if m["version"] == champions.champion), None)
    if version or focus is None:
        focus = page.items[0] if page.items else None
    production = None
    if focus is not None:
        production = monitoring_models.production_performance(backend.engine, focus["version"])
        production["performance_svg"] = charts.performance_chart(
            production["weeks"], focus.get("gate_estimate_by_post")
        )
        production["calibration_svg"] = charts.calibration_chart(production["calibration"])
    searches = monitoring_models.sweeps(backend.engine)
    for search in searches:
        honest = ((search["selection"] or {}).get("nested") or {}).get("estimate")
        search["charts"] = [
            charts.sweep_chart(name, search["candidates"], honest) for name in search["varied"]
        ]
    return render(
        request,
        "models.html",
        page=page,
        champions=champions,
        focus=focus,
        production=production,
        sweeps=searches,
        filters={"run_id": run_id, "version": version},
    )


@router.get("/models/{version}/plots/{name}")
def plot(backend: BackendDep, version: str, name: str) -> Response:
    """One PNG of a version's artifact, checked against the artifact's manifest."""
    artifact = monitoring_models.model_artifact(backend.engine, version)
    if artifact is None:
        raise HTTPException(404, f"no model version {version} with an artifact")
    try:
        data = files.plot_bytes(*artifact, name, backend.settings.gcs_endpoint)
    except files.NotServable as exc:
        raise HTTPException(404, str(exc)) from exc
    # Immutable: the artifact's sha256 is recorded, and checked above.
    return Response(
        data, media_type="image/png", headers={"Cache-Control": "private, max-age=86400"}
    )


@router.get("/api/models")
def models_api(
    request: Request,
    backend: BackendDep,
    run_id: str | None = None,
    version: str | None = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> dict[str, Any]:
    """The leaderboard as JSON, with each version's plot URLs."""
    page = _leaderboard(
        request, backend, run_id=run_id, version=version, limit=limit, offset=offset
    )
    return page.to_json()
