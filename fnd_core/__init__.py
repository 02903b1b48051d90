"""fnd: batch fake-news detection for image+text posts.

The domain library and the `fnd` CLI; it never imports airflow.
"""

__version__ = "0.1.0"
