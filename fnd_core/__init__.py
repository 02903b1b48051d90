"""fnd: batch fake-news detection for image+text posts.

The domain library and the `fnd` CLI; it never imports airflow. Its layers, bottom up:
``contracts`` and ``settings`` (facts everyone reads), ``io`` (storage, image decoding, the
database), ``ingest`` and ``model`` (independent of each other), ``pipeline`` (retrain, gate,
scoring), ``observe`` (monitoring, drift, alerts), ``stack`` (the CLI and the local Airflow
stack). A module imports only from layers below its own (``make lint`` checks it).
"""

__version__ = "0.1.0"
