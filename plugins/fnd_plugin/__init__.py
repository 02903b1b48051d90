"""fnd's monitoring pages for the Airflow UI: data quality, models, scores (a FastAPI app).

``plugins/fnd_monitoring.py`` registers it with Airflow: the app is mounted under
:data:`URL_PREFIX` on Airflow's API server, and :data:`EXTERNAL_VIEWS` adds the pages to
Airflow's navigation (menu "Plugins" → "fnd") and a tab "fnd" on every DAG run.

Importing this package is cheap (no FastAPI, no SQLAlchemy, no Airflow): Airflow loads plugins
in every process, each task included, so the app itself is only built on its first request.
"""

from __future__ import annotations

from typing import Any

URL_PREFIX = "/fnd"
ASSETS_PREFIX = "/fnd-assets"  # public: the libraries and images Data Docs pages load

# hrefs are relative (no leading slash): the UI resolves them against Airflow's base URL, so
# the pages also work when Airflow is served under a sub-path. On a DAG run, the UI fills in
# {DAG_ID} and {RUN_ID}; /fnd/run sends each fnd DAG to its page filtered by that run.
EXTERNAL_VIEWS: list[dict[str, Any]] = [
    {
        "name": "Data quality",
        "href": "fnd/data-quality",
        "url_route": "fnd-data-quality",
        "category": "fnd",
        "destination": "nav",
    },
    {
        "name": "Models",
        "href": "fnd/models",
        "url_route": "fnd-models",
        "category": "fnd",
        "destination": "nav",
    },
    {
        "name": "Scores",
        "href": "fnd/scores",
        "url_route": "fnd-scores",
        "category": "fnd",
        "destination": "nav",
    },
    {
        "name": "fnd",
        "href": "fnd/run?dag_id={DAG_ID}&run_id={RUN_ID}",
        "url_route": "fnd-run",
        "destination": "dag_run",
    },
]


def lazy_app() -> Any:
    """The ASGI app Airflow mounts: builds :func:`fnd_plugin.app.create_app` on first use."""
    from fnd_plugin.asgi import LazyApp

    def build() -> Any:
        from fnd_plugin.app import create_app

        return create_app()

    return LazyApp(build)


def lazy_assets_app() -> Any:
    """The public ASGI app of Data Docs assets (``docs_offline.create_assets_app``)."""
    from fnd_plugin.asgi import LazyApp

    def build() -> Any:
        from fnd_plugin.docs_offline import create_assets_app

        return create_assets_app()

    return LazyApp(build)
