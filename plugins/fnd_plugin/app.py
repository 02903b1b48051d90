"""The FastAPI app of fnd's monitoring pages, and how it is protected.

Authentication: Airflow does not protect plugin apps, so every route of this app depends on
Airflow's own ``requires_access_view(AccessView.WEBSITE)``: it resolves the user with
Airflow's ``get_user`` — the JWT of an ``Authorization: Bearer`` header, else the UI's
``_token`` cookie (the one the browser sends when the UI shows these pages in its iframe) —
validates it with the configured auth manager, and asks the auth manager whether that user
may view the Airflow website. No token: 401; an invalid one: 403; a user without access: 403.
"""

from __future__ import annotations

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response

from fnd_core.contracts import INGEST_DAG, RETRAIN_DAG, SCORE_DAG
from fnd_plugin import models, quality, scores
from fnd_plugin.backend import Backend, backend_from_airflow
from fnd_plugin.web import link, render

# Where the "fnd" tab of a DAG run leads, per DAG: that DAG's page filtered by the run.
RUN_PAGES = {INGEST_DAG: "data-quality", RETRAIN_DAG: "models", SCORE_DAG: "scores"}


def airflow_user_required() -> Depends:
    """Airflow's dependency: a valid Airflow JWT (header or cookie) of a user of the website."""
    from airflow.api_fastapi.auth.managers.models.resource_details import AccessView
    from airflow.api_fastapi.core_api.security import requires_access_view

    return Depends(requires_access_view(AccessView.WEBSITE))


def create_app(backend: Backend | None = None) -> FastAPI:
    """The monitoring app; ``backend`` defaults to the API server's (``fnd_db``, ``FND_*``)."""
    app = FastAPI(
        title="fnd monitoring",
        dependencies=[airflow_user_required()],
        # The OpenAPI and docs routes would bypass the dependency above: none are served.
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
    )
    app.state.backend = backend or backend_from_airflow()
    for module in (quality, models, scores):
        app.include_router(module.router)

    @app.get("/", include_in_schema=False)
    def index(request: Request) -> Response:
        return RedirectResponse(link(request, "data-quality"), status_code=303)

    @app.get("/run", include_in_schema=False)
    def dag_run(request: Request, dag_id: str, run_id: str) -> Response:
        """The "fnd" tab of a DAG run: that DAG's page, filtered by the run."""
        page = RUN_PAGES.get(dag_id)
        if page is None:
            return render(request, "not_fnd.html", dag_id=dag_id, run_id=run_id)
        return RedirectResponse(link(request, page, run_id=run_id), status_code=303)

    @app.exception_handler(ValueError)
    async def bad_request(request: Request, exc: ValueError) -> Response:
        return JSONResponse({"detail": str(exc)}, status_code=400)

    @app.exception_handler(RequestValidationError)
    async def bad_parameter(request: Request, exc: RequestValidationError) -> Response:
        """A parameter out of its bounds (``limit``, ``offset``...) or of the wrong type: 400
        with what was wrong, never the value echoed at length."""
        return JSONResponse({"detail": parameter_errors(exc.errors())}, status_code=400)

    return app


def parameter_errors(errors: list[dict]) -> str:
    """FastAPI's validation errors in one line: ``offset: Input should be greater than or
    equal to 0``; at most five, each cut short."""
    said = []
    for error in errors[:5]:
        where = ".".join(str(part) for part in error.get("loc", ())[1:]) or "request"
        said.append(f"{where}: {str(error.get('msg', 'invalid'))[:200]}")
    return "; ".join(said)
