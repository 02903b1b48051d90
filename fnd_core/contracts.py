"""Names other systems see: DAG ids, task ids, asset URIs and the Airflow connection ids.

Defined once here and read by the DAG files, the UI plugin, the failure notifier and the local
stack's kick-off, so that renaming a DAG, a task or an asset cannot leave one of them pointing
at the old name (tests/airflow/test_dag_integrity.py checks the DAGs against this module).
"""

from __future__ import annotations

# DAGs
INGEST_DAG = "fnd_ingest"
SCORE_DAG = "fnd_score"
RETRAIN_DAG = "fnd_retrain"
LANDING_WATCH_DAG = "fnd_landing_watch"
SWEEP_DAG = "fnd_sweep"  # model search: candidates as mapped tasks, the winner gated
PIPELINE_DAGS = (INGEST_DAG, SCORE_DAG, RETRAIN_DAG)  # the ones every deployment runs
ALL_DAGS = (*PIPELINE_DAGS, LANDING_WATCH_DAG, SWEEP_DAG)  # + the gs:// sensor, the search

# Tasks that other code names (failure messages, the kick-off, the UI)
INGEST_FILE_TASK = "ingest_file"  # fnd_ingest: one mapped instance per landing file
SCORE_SHARD_TASK = "score_shard"  # fnd_score: one mapped instance per shard
VALIDATE_SNAPSHOT_TASK = "validate_snapshot"  # fnd_retrain: the GX suite over the snapshot
RESCORING_TASK = "trigger_rescoring"  # fnd_retrain, fnd_sweep: fnd_score after a promotion
SWEEP_CANDIDATE_TASK = "evaluate_candidate"  # fnd_sweep: one mapped instance per candidate
CLAIM_LEASE_TASK = "claim_training_lease"  # fnd_retrain, fnd_sweep: wait for the training lease
RELEASE_LEASE_TASK = "release_training_lease"  # their teardown: give the lease back

# Assets: the contract between the DAGs (ingest -> score, retrain -> score, drift -> retrain)
POSTS_ASSET = "fnd://posts"
PREDICTIONS_ASSET = "fnd://predictions"
DRIFT_ASSET = "fnd://drift"

# Airflow connections
DB_CONN_ID = "fnd_db"  # fnd's database: the tasks, and the UI when DB_READ_CONN_ID is not defined
DB_READ_CONN_ID = "fnd_db_read"  # optional: a login holding only fnd_reader, for the UI plugin
GCP_CONN_ID = "google_cloud_default"  # default of FND_GCP_CONN_ID
