-- Model registry and predictions. The database, not the code, guarantees that there is
-- at most one champion, and that a post is scored at most once per model version.

create table fnd.model_versions (
    version          text primary key,
    status           text not null default 'candidate',
    created_at       timestamptz not null default now(),
    preset           text not null,
    config           jsonb not null default '{}'::jsonb,
    metrics          jsonb not null default '{}'::jsonb,
    gate             jsonb,
    artifact_uri     text,
    artifact_sha256  text,
    data_window_start timestamptz,
    data_window_end  timestamptz,
    n_train_rows     integer,
    n_val_rows       integer,
    n_test_rows      integer,
    training_run_id  text,
    promoted_at      timestamptz,
    retired_at       timestamptz,
    forced_by        text,
    constraint model_versions_status_is_known
        check (status in ('candidate', 'champion', 'rejected', 'retired')),
    constraint model_versions_sha256_is_hex
        check (artifact_sha256 is null or artifact_sha256 ~ '^[0-9a-f]{64}$'),
    constraint model_versions_champion_has_artifact
        check (status <> 'champion' or (artifact_uri is not null and artifact_sha256 is not null))
);
comment on table fnd.model_versions is 'Every trained model: candidate -> champion / rejected; champion -> retired.';
comment on column fnd.model_versions.version is 'Version id, e.g. m20261122T2205-3fa2c1.';
comment on column fnd.model_versions.status is 'candidate, champion (at most one), rejected by the gate, or retired.';
comment on column fnd.model_versions.created_at is 'When training started.';
comment on column fnd.model_versions.preset is 'Backbone preset: offline, seed or tiny.';
comment on column fnd.model_versions.config is 'Full model + training configuration (JSON).';
comment on column fnd.model_versions.metrics is 'Per split: accuracy, precision, recall, f1, roc_auc, confusion matrix.';
comment on column fnd.model_versions.gate is 'Gate decision: promote/reject, reasons, thresholds, champion compared.';
comment on column fnd.model_versions.artifact_uri is 'Folder with model.safetensors + config.json + plots.';
comment on column fnd.model_versions.artifact_sha256 is 'sha256 of the weights, checked on every load.';
comment on column fnd.model_versions.data_window_start is 'Earliest ingested_at of the training data.';
comment on column fnd.model_versions.data_window_end is 'Latest ingested_at of the training data.';
comment on column fnd.model_versions.n_train_rows is 'Labelled posts in the train split.';
comment on column fnd.model_versions.n_val_rows is 'Labelled posts in the val split.';
comment on column fnd.model_versions.n_test_rows is 'Labelled posts in the test split.';
comment on column fnd.model_versions.training_run_id is 'Airflow run id (or cli) that trained it.';
comment on column fnd.model_versions.promoted_at is 'When it became champion.';
comment on column fnd.model_versions.retired_at is 'When a newer champion replaced it.';
comment on column fnd.model_versions.forced_by is 'Who forced promotion past the gate (audit), NULL if not forced.';

-- At most one champion, enforced by the database.
create unique index model_versions_one_champion on fnd.model_versions ((true))
    where status = 'champion';
create index model_versions_created_at_idx on fnd.model_versions (created_at desc);

create table fnd.predictions (
    post_id        text not null references fnd.posts (post_id),
    model_version  text not null references fnd.model_versions (version),
    p_fake         real not null,
    label          text not null,
    threshold      real not null,
    scored_at      timestamptz not null default now(),
    run_id         text,
    constraint predictions_pkey primary key (post_id, model_version),
    constraint predictions_p_fake_is_probability check (p_fake between 0 and 1),
    constraint predictions_label_is_known check (label in ('fake', 'real')),
    constraint predictions_label_matches_threshold
        check ((label = 'fake') = (p_fake >= threshold))
);
comment on table fnd.predictions is 'One verdict per (post, model version); bulk-written, idempotent.';
comment on column fnd.predictions.post_id is 'The post scored.';
comment on column fnd.predictions.model_version is 'The model version that scored it.';
comment on column fnd.predictions.p_fake is 'Model probability that the post is fake (0..1).';
comment on column fnd.predictions.label is 'fake when p_fake >= threshold, else real.';
comment on column fnd.predictions.threshold is 'Decision threshold of that model version (chosen on val).';
comment on column fnd.predictions.scored_at is 'When the score was written.';
comment on column fnd.predictions.run_id is 'Airflow run id (or cli) that scored it.';
-- Serves "which posts has version V not scored yet" (anti-join by version) and per-version counts.
create index predictions_model_version_idx on fnd.predictions (model_version, post_id);
create index predictions_scored_at_idx on fnd.predictions (scored_at);

create table fnd.scoring_errors (
    post_id        text not null references fnd.posts (post_id),
    model_version  text not null references fnd.model_versions (version),
    error          text not null,
    occurred_at    timestamptz not null default now(),
    run_id         text,
    constraint scoring_errors_pkey primary key (post_id, model_version)
);
comment on table fnd.scoring_errors is 'Posts a model version could not score (e.g. image unreadable), never skipped silently.';
comment on column fnd.scoring_errors.post_id is 'The post that failed.';
comment on column fnd.scoring_errors.model_version is 'The model version that tried.';
comment on column fnd.scoring_errors.error is 'What went wrong.';
comment on column fnd.scoring_errors.occurred_at is 'When it last failed.';
comment on column fnd.scoring_errors.run_id is 'Airflow run id (or cli).';
