-- Ingest: one row per landed file, the posts it yielded, and every row it refused.
-- Invariant: n_received = n_accepted + n_quarantined + n_duplicate for every finished batch,
-- so nothing that lands is ever lost without a trace.

create table fnd.ingest_batches (
    batch_id        bigint generated always as identity primary key,
    source_uri      text not null,
    content_sha256  text not null,
    format          text,
    status          text not null default 'running',
    n_received      integer not null default 0,
    n_accepted      integer not null default 0,
    n_quarantined   integer not null default 0,
    n_duplicate     integer not null default 0,
    error           text,
    archived_uri    text,
    started_at      timestamptz not null default now(),
    finished_at     timestamptz,
    run_id          text,
    constraint ingest_batches_content_is_unique unique (content_sha256),
    constraint ingest_batches_sha256_is_hex check (content_sha256 ~ '^[0-9a-f]{64}$'),
    constraint ingest_batches_status_is_known
        check (status in ('running', 'loaded', 'failed')),
    constraint ingest_batches_counts_add_up
        check (status <> 'loaded' or n_received = n_accepted + n_quarantined + n_duplicate),
    constraint ingest_batches_counts_not_negative
        check (least(n_received, n_accepted, n_quarantined, n_duplicate) >= 0)
);
comment on table fnd.ingest_batches is
    'One row per landed file. The content hash is unique: landing the same bytes again is a no-op.';
comment on column fnd.ingest_batches.batch_id is 'Surrogate key, referenced by posts and quarantine.';
comment on column fnd.ingest_batches.source_uri is 'Where the file was found (local path or gs:// URI).';
comment on column fnd.ingest_batches.content_sha256 is 'sha256 of the file bytes: the idempotency key.';
comment on column fnd.ingest_batches.format is 'Detected landing format: jsonl, csv, parquet, fakeddit.';
comment on column fnd.ingest_batches.status is 'running while loading; loaded when done; failed (see error).';
comment on column fnd.ingest_batches.n_received is 'Rows read from the file (including unparseable ones).';
comment on column fnd.ingest_batches.n_accepted is 'Rows inserted into fnd.posts.';
comment on column fnd.ingest_batches.n_quarantined is 'Rows written to fnd.quarantine with a reason.';
comment on column fnd.ingest_batches.n_duplicate is 'Rows whose post_id was already in fnd.posts.';
comment on column fnd.ingest_batches.error is 'Why the whole file failed, when status = failed.';
comment on column fnd.ingest_batches.archived_uri is 'Where the file was moved afterwards (archive/ or failed/).';
comment on column fnd.ingest_batches.started_at is 'When loading began.';
comment on column fnd.ingest_batches.finished_at is 'When loading ended (loaded or failed).';
comment on column fnd.ingest_batches.run_id is 'Airflow run id (or cli) that loaded the file.';

create table fnd.posts (
    post_id         text primary key,
    source          text not null,
    text            text not null,
    image_uri       text not null,
    image_sha256    text not null,
    image_width     integer,
    image_height    integer,
    created_at      timestamptz,
    label           smallint,
    split           text not null,
    batch_id        bigint not null references fnd.ingest_batches (batch_id),
    ingested_at     timestamptz not null default now(),
    label_updated_at timestamptz,
    extra           jsonb not null default '{}'::jsonb,
    constraint posts_post_id_not_blank check (length(btrim(post_id)) > 0),
    constraint posts_text_not_empty check (length(text) > 0),
    constraint posts_label_is_binary check (label in (0, 1)),
    constraint posts_split_is_known check (split in ('train', 'val', 'test')),
    constraint posts_image_sha256_is_hex check (image_sha256 ~ '^[0-9a-f]{64}$')
);
comment on table fnd.posts is 'Accepted posts: one row per post_id, text byte-exact as received (trimmed).';
comment on column fnd.posts.post_id is 'Identifier from the source; primary key.';
comment on column fnd.posts.source is 'Landing format and file name the post came from.';
comment on column fnd.posts.text is 'Post text (title/caption), surrounding whitespace trimmed, otherwise as received.';
comment on column fnd.posts.image_uri is 'Image in the content-addressed store: <store>/images/<sha256>.<ext>.';
comment on column fnd.posts.image_sha256 is 'sha256 of the original image bytes (shared by reposts).';
comment on column fnd.posts.image_width is 'Image width in pixels after EXIF orientation.';
comment on column fnd.posts.image_height is 'Image height in pixels after EXIF orientation.';
comment on column fnd.posts.created_at is 'When the post was published, per the source (UTC); NULL if unknown.';
comment on column fnd.posts.label is 'Ground truth: NULL unlabelled, 0 real, 1 fake.';
comment on column fnd.posts.split is 'train / val / test, stable: derived from a hash of post_id.';
comment on column fnd.posts.batch_id is 'The ingest batch (file) that inserted the post.';
comment on column fnd.posts.ingested_at is 'When the post was inserted.';
comment on column fnd.posts.label_updated_at is 'When a later file changed the label of this post (NULL: never).';
comment on column fnd.posts.extra is 'Source-specific fields kept for analysis (subreddit, domain, score...).';

create index posts_batch_id_idx on fnd.posts (batch_id);
create index posts_image_sha256_idx on fnd.posts (image_sha256);
create index posts_created_at_idx on fnd.posts (created_at);
create index posts_labelled_idx on fnd.posts (split) where label is not null;

create table fnd.quarantine (
    quarantine_id   bigint generated always as identity primary key,
    batch_id        bigint not null references fnd.ingest_batches (batch_id),
    row_number      integer not null,
    post_id         text,
    rule            text not null,
    reason          text not null,
    raw             text not null,
    quarantined_at  timestamptz not null default now(),
    constraint quarantine_row_is_unique unique (batch_id, row_number)
);
comment on table fnd.quarantine is 'Every rejected row, verbatim, with the rule it broke and a readable reason.';
comment on column fnd.quarantine.quarantine_id is 'Surrogate key.';
comment on column fnd.quarantine.batch_id is 'The ingest batch (file) the row came from.';
comment on column fnd.quarantine.row_number is 'Row number within the file (1-based, header excluded).';
comment on column fnd.quarantine.post_id is 'The row''s id when one could be read.';
comment on column fnd.quarantine.rule is 'Stable code of the check that failed, e.g. image_truncated.';
comment on column fnd.quarantine.reason is 'What was wrong, for people.';
comment on column fnd.quarantine.raw is 'The row as received (invalid bytes and NUL shown as escapes).';
comment on column fnd.quarantine.quarantined_at is 'When the row was quarantined.';
create index quarantine_rule_idx on fnd.quarantine (rule);

create table fnd.validation_runs (
    validation_id   bigint generated always as identity primary key,
    suite           text not null,
    batch_id        bigint references fnd.ingest_batches (batch_id),
    batch_name      text not null,
    success         boolean not null,
    n_evaluated_rows integer not null,
    statistics      jsonb not null default '{}'::jsonb,
    results         jsonb not null default '[]'::jsonb,
    data_docs_uri   text,
    gx_version      text,
    validated_at    timestamptz not null default now(),
    run_id          text
);
comment on table fnd.validation_runs is 'Great Expectations validation runs: ingest batches and training snapshots.';
comment on column fnd.validation_runs.validation_id is 'Surrogate key.';
comment on column fnd.validation_runs.suite is 'Expectation suite name (expectations/<suite>.json).';
comment on column fnd.validation_runs.batch_id is 'Ingest batch validated; NULL for training snapshots.';
comment on column fnd.validation_runs.batch_name is 'What was validated, for people (file name or snapshot id).';
comment on column fnd.validation_runs.success is 'True when every expectation was met.';
comment on column fnd.validation_runs.n_evaluated_rows is 'Rows in the validated data.';
comment on column fnd.validation_runs.statistics is 'GX statistics: evaluated / successful / unsuccessful expectations.';
comment on column fnd.validation_runs.results is 'Per expectation: type, column, success, unexpected count and share.';
comment on column fnd.validation_runs.data_docs_uri is 'The HTML Data Docs page of this run.';
comment on column fnd.validation_runs.gx_version is 'great_expectations version that ran the suite.';
comment on column fnd.validation_runs.validated_at is 'When the validation ran.';
comment on column fnd.validation_runs.run_id is 'Airflow run id (or cli).';
create index validation_runs_batch_id_idx on fnd.validation_runs (batch_id);
create index validation_runs_validated_at_idx on fnd.validation_runs (validated_at desc);
