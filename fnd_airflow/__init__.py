"""What fnd's DAGs and its UI plugin share with Airflow, written once.

- :mod:`fnd_airflow.connections`: fnd's database named by an Airflow connection (``fnd_db``
  for tasks, the read-only ``fnd_db_read`` for the pages), one lookup for both.
- :mod:`fnd_airflow.dag_support`: the DAGs' common arguments, asset URIs, failure callback,
  alerts, and the settings and engine a task uses.
- :mod:`fnd_airflow.gcp`: Google Cloud the Airflow way (the connection's credentials for
  ``gs://``, the landing sensor's location, Vertex AI).

Above :mod:`fnd_core` (which never imports Airflow) and below ``dags/`` and ``plugins/`` (an
import-linter contract in ``pyproject.toml``); installed with the project, so neither the DAGs
nor the plugin edit ``sys.path``. Imports here are light: DAG files import it at parse time.
"""
