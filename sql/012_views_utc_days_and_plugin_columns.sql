-- The monitoring pages (fnd_core/observe/monitoring_*.py) read fnd.daily_summary and
-- fnd.model_leaderboard instead of repeating their SQL, so the views the analysts query and the
-- pages the operators look at cannot disagree. `create or replace` keeps every existing column
-- (same name, same type, same comment) and appends the new ones at the end.
--
-- Day bucketing, until now: the view (003) cut days with
-- date_trunc('day', coalesce(created_at, ingested_at))::date, and date_trunc on a timestamptz
-- cuts in the *session's* TimeZone: UTC only where the server's default is UTC (initdb takes
-- the machine's zone) and the client sets none; a post moved to another day for psql with PGTZ
-- set or on a server in local time, and the column comment's "(UTC)" held by chance.
-- The scores page cut UTC days explicitly (`at time zone 'UTC'`), so the two could disagree.
-- Kept: UTC calendar days, for every client. A post at 23:30 UTC counts on that UTC date: the
-- sources give times in UTC (created_utc), posts come from every time zone, and a day that
-- moved with the reader's settings could not be compared between two readers.
-- `timezone('UTC', timestamptz)` is immutable, unlike date_trunc on a timestamptz, so the day
-- can be indexed: the scores page asks for a window of days, and the index answers it without
-- reading every post.
-- The champion's verdict is joined as in fnd.latest_predictions (the champion's row of
-- fnd.predictions; its join to fnd.posts only repeats the foreign key), but by the champion's
-- version: one primary-key probe per post instead of reading every version's verdict on it
-- (measured: a 30-day window of 200k posts in 60 ms instead of 120 ms). Counts are unchanged.

create or replace view fnd.daily_summary as
with verdicts as (
    select
        (coalesce(p.created_at, p.ingested_at) at time zone 'UTC')::date as day,
        pr.label
    from fnd.posts p
    left join fnd.predictions pr
        on pr.post_id = p.post_id
        and pr.model_version = (select version from fnd.model_versions where status = 'champion')
)
select
    day,
    count(*) as n_posts,
    count(label) as n_scored,
    count(*) filter (where label = 'fake') as n_fake,
    round(count(*) filter (where label = 'fake')::numeric / nullif(count(label), 0), 4)
        as fake_share
from verdicts
group by day
order by day;
comment on view fnd.daily_summary is 'Per UTC day of publication (else ingestion): posts, scored by the champion, flagged fake, fake share.';
comment on column fnd.daily_summary.day is 'UTC calendar day of publication, or of ingestion when the publication time is unknown; the same for every client, whatever its TimeZone.';

-- The expression must match the view's `day` exactly for the planner to use it.
create index posts_day_utc_idx
    on fnd.posts (((coalesce(created_at, ingested_at) at time zone 'UTC')::date));
comment on index fnd.posts_day_utc_idx is
    'UTC day of coalesce(created_at, ingested_at), as fnd.daily_summary counts days: a window of days reads only its posts.';

-- The models page shows, per version, what the gate decided on and why: the view gains the
-- columns the page needs (metrics, gate checks, cross-validation and baselines, leak report,
-- artifact) that it lacked. Its forced_by stays the column: the page used to fall back on
-- gate ->> 'forced_by', which fnd_core/pipeline/registry.py always writes together with it.
create or replace view fnd.model_leaderboard as
select
    version,
    status,
    created_at,
    preset,
    (metrics -> 'test' ->> 'accuracy')::numeric as test_accuracy,
    (metrics -> 'test' ->> 'f1')::numeric as test_f1,
    (metrics -> 'test' ->> 'roc_auc')::numeric as test_roc_auc,
    gate ->> 'decision' as gate_decision,
    gate ->> 'reason' as gate_reason,
    forced_by,
    n_train_rows,
    data_window_start,
    data_window_end,
    promoted_at,
    retired_at,
    coalesce(gate ->> 'metric', metrics -> 'cv' ->> 'metric') as gate_metric,
    coalesce(
        (gate ->> 'estimate')::numeric, (metrics -> 'cv' ->> 'estimate')::numeric
    ) as gate_estimate,
    (metrics -> 'cv' ->> 'fold_std')::numeric as gate_estimate_fold_std,
    (metrics -> 'leak' ->> 'n_groups')::integer as n_leak_groups,
    n_val_rows,
    n_test_rows,
    (metrics -> 'test' ->> 'precision')::numeric as test_precision,
    (metrics -> 'test' ->> 'recall')::numeric as test_recall,
    metrics -> 'test' -> 'confusion_matrix' as test_confusion,
    (metrics -> 'val' ->> 'accuracy')::numeric as val_accuracy,
    (metrics -> 'val' ->> 'threshold')::numeric as threshold,
    gate -> 'evaluation' -> 'champion' ->> 'version' as compared_with,
    gate -> 'checks' as gate_checks,
    (metrics -> 'cv' ->> 'n_folds')::integer as cv_folds,
    (metrics -> 'cv' ->> 'n_repeats')::integer as cv_repeats,
    (metrics -> 'baselines' -> 'text_lr' ->> 'estimate')::numeric as baseline_text_lr,
    (metrics -> 'baselines' -> 'prior' ->> 'estimate')::numeric as baseline_prior,
    (metrics -> 'champion_recipe' -> 'cv' ->> 'estimate')::numeric as champion_recipe_estimate,
    metrics -> 'leak' as leak,
    gate ->> 'floor_set_by' as floor_set_by,
    artifact_uri,
    artifact_sha256,
    training_run_id
from fnd.model_versions
order by created_at desc;
comment on column fnd.model_leaderboard.n_val_rows is 'Labelled posts in the val split.';
comment on column fnd.model_leaderboard.n_test_rows is 'Labelled posts in the test split, when the training used one.';
comment on column fnd.model_leaderboard.test_precision is 'Precision (fake = positive), out-of-fold.';
comment on column fnd.model_leaderboard.test_recall is 'Recall (fake = positive), out-of-fold.';
comment on column fnd.model_leaderboard.test_confusion is 'Confusion matrix [[tn, fp], [fn, tp]] (rows truth, columns prediction), out-of-fold.';
comment on column fnd.model_leaderboard.val_accuracy is 'Accuracy on the val split.';
comment on column fnd.model_leaderboard.threshold is 'Decision threshold on p_fake (fake at or above it), as recorded with the validation metrics.';
comment on column fnd.model_leaderboard.compared_with is 'The champion whose recipe the gate compared with, on the same folds (NULL: none).';
comment on column fnd.model_leaderboard.gate_checks is 'The gate''s checks: [{name, value, bound, passed}].';
comment on column fnd.model_leaderboard.cv_folds is 'Grouped cross-validation: folds per repeat.';
comment on column fnd.model_leaderboard.cv_repeats is 'Grouped cross-validation: repeats.';
comment on column fnd.model_leaderboard.baseline_text_lr is 'Gate metric of the text-only logistic regression baseline, on the same folds.';
comment on column fnd.model_leaderboard.baseline_prior is 'Gate metric of the prior baseline (the training posts'' majority class), on the same folds.';
comment on column fnd.model_leaderboard.champion_recipe_estimate is 'Gate metric of the champion''s recipe retrained on the same folds (NULL: no champion).';
comment on column fnd.model_leaderboard.leak is 'Leak report of the snapshot: split_policy, n_groups, largest_group, groups_straddling_folds.';
comment on column fnd.model_leaderboard.floor_set_by is 'Who changed the gate''s floor for this run (audit), NULL if nobody.';
comment on column fnd.model_leaderboard.artifact_uri is 'Folder with model.safetensors + config.json + plots.';
comment on column fnd.model_leaderboard.artifact_sha256 is 'sha256 of the weights, checked on every load.';
comment on column fnd.model_leaderboard.training_run_id is 'Airflow run id (or cli) that trained it.';
