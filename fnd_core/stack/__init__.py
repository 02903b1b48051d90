"""The local stack and the `fnd` CLI: processes, Airflow REST kickoff, demo data, workers."""
