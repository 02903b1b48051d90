"""Airflow plugin: fnd's data-quality, model and score pages inside the Airflow UI.

Airflow discovers this file in its plugins folder (``AIRFLOW__CORE__PLUGINS_FOLDER`` =
``<repo>/plugins``). It mounts the FastAPI app of :mod:`fnd_plugin` under ``/fnd`` on the API
server and adds its pages to the navigation ("Plugins" → "fnd") and a "fnd" tab to DAG runs.
Every page requires a signed-in Airflow user (see :mod:`fnd_plugin.app`); only the static
libraries Data Docs pages load are public (``/fnd-assets``, :mod:`fnd_plugin.docs_offline`).
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin
from fnd_plugin import ASSETS_PREFIX, EXTERNAL_VIEWS, URL_PREFIX, lazy_app, lazy_assets_app


class FndMonitoringPlugin(AirflowPlugin):
    """Data quality, models and scores of fnd, served by the Airflow API server."""

    name = "fnd_monitoring"
    fastapi_apps = [
        {"app": lazy_app(), "url_prefix": URL_PREFIX, "name": "fnd monitoring"},
        # Public: only the libraries and GX images that sandboxed Data Docs pages load.
        {"app": lazy_assets_app(), "url_prefix": ASSETS_PREFIX, "name": "fnd Data Docs assets"},
    ]
    external_views = EXTERNAL_VIEWS
