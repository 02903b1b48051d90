"""Scores: daily volume and fake share, champion vs previous champion, drift, novelty per run,
latest fake posts."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from fastapi.responses import HTMLResponse, Response

from fnd_core.observe import monitoring, monitoring_scores
from fnd_plugin import charts, files
from fnd_plugin.backend import Backend
from fnd_plugin.web import backend, link, render

router = APIRouter()

BackendDep = Annotated[Backend, Depends(backend)]
Days = Annotated[int, Query(ge=1, le=monitoring.MAX_DAYS)]
Limit = Annotated[int, Query(ge=1, le=monitoring.MAX_LIMIT)]
Offset = Annotated[int, Query(ge=0)]
DAY_CHOICES = (7, 14, 30, 90)
SAMPLE_POSTS = 5000  # posts in the champion / previous champion comparison
HISTOGRAM_BINS = 20
DRIFT_REPORTS = 30  # newest drift reports charted and listed


def _scores(
    request: Request, backend: Backend, *, days: int, limit: int, offset: int
) -> dict[str, Any]:
    engine = backend.engine
    flagged = monitoring_scores.latest_flagged_fake(engine, limit=limit, offset=offset)
    for item in flagged["items"]:
        item["thumbnail_url"] = link(request, f"images/{item['image_sha256']}.jpg", size=160)
    return {
        "daily": monitoring_scores.daily_volume(engine, days=days),
        "comparison": monitoring_scores.score_comparison(
            engine, n_posts=SAMPLE_POSTS, window=4 * SAMPLE_POSTS, bins=HISTOGRAM_BINS
        ),
        "flagged": flagged,
        "drift": monitoring_scores.drift_reports(engine, limit=DRIFT_REPORTS),
        "novelty": monitoring_scores.novelty_by_run(
            engine, runs=len(charts.SERIES_COLOURS), window=4 * SAMPLE_POSTS
        ),
    }


@router.get("/scores", response_class=HTMLResponse)
def scores_page(
    request: Request,
    backend: BackendDep,
    days: Days = 14,
    limit: Limit = 20,
    offset: Offset = 0,
    run_id: str | None = None,
) -> HTMLResponse:
    """Daily chart, p_fake histograms, and the latest posts flagged fake.

    ``run_id`` (from a fnd_score run's tab) is shown, not filtered on: scores are the
    champion's, whichever run wrote them.
    """
    data = _scores(request, backend, days=days, limit=limit, offset=offset)
    comparison = data["comparison"]
    series = [("champion", f"champion {comparison['champion']}")]
    if comparison["previous"]:
        series.append(("previous", f"previous {comparison['previous']}"))
    runs = [(r["run_id"], f"run {r['run_id']}") for r in data["novelty"]["runs"]]
    return render(
        request,
        "scores.html",
        days=days,
        day_choices=DAY_CHOICES,
        run_id=run_id,
        daily_svg=charts.daily_chart(data["daily"]["days"]),
        histogram_svg=charts.histogram_chart(comparison["bins"], series),
        drift_svg=charts.drift_chart(data["drift"]),
        novelty_svg=charts.histogram_chart(data["novelty"]["bins"], runs, "novelty", digits=0),
        series=_legend(series),
        novelty_series=_legend(runs),
        **data,
    )


def _legend(series: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return [
        (label, colour)
        for (_, label), colour in zip(series, charts.SERIES_COLOURS[: len(series)], strict=True)
    ]


@router.get("/api/scores")
def scores_api(
    request: Request,
    backend: BackendDep,
    days: Days = 14,
    limit: Limit = 20,
    offset: Offset = 0,
) -> dict[str, Any]:
    """The scores page's data as JSON: ``daily``, ``comparison``, ``flagged``, ``drift`` and
    ``novelty``."""
    return _scores(request, backend, days=days, limit=limit, offset=offset)


@router.get("/images/{sha256}.jpg")
def image(
    backend: BackendDep,
    sha256: Annotated[str, Path(pattern=files.SHA256.pattern)],
    size: Annotated[int, Query()] = 160,
) -> Response:
    """A post image from the image store, resized on the server (JPEG, longer side ``size``).

    Only images of known posts (by content hash) are served, at a few fixed sizes.
    """
    if size not in files.THUMBNAIL_SIZES:
        raise HTTPException(400, f"size must be one of {files.THUMBNAIL_SIZES}")
    uri = monitoring_scores.image_uri(backend.engine, sha256)
    if uri is None:
        raise HTTPException(404, f"no post has an image with sha256 {sha256}")
    try:
        data = files.cached_thumbnail(
            uri,
            size,
            max_pixels=backend.settings.max_image_pixels,
            gcs_endpoint=backend.settings.gcs_endpoint,
        )
    except files.NotServable as exc:
        raise HTTPException(404, str(exc)) from exc
    # Content-addressed: the bytes behind a hash never change.
    return Response(
        data, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=604800"}
    )
