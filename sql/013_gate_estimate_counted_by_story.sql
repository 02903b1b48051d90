-- The gate's estimate counts each story once (a leak group: a picture or caption and its
-- reposts), as training does: counted by posts, a few pictures reposted thousands of times
-- decided it (fnd_core/pipeline/evaluation.py, summarise). The leaderboard says how the
-- estimate was counted and keeps the post-counted figure beside it; versions trained before
-- this recorded only the post-counted one, so their gate_counted_by is 'posts'.
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
    training_run_id,
    coalesce(metrics -> 'cv' ->> 'counted_by', 'posts') as gate_counted_by,
    coalesce(
        (metrics -> 'cv' -> 'posts' -> 'estimates'
            ->> coalesce(gate ->> 'metric', metrics -> 'cv' ->> 'metric'))::numeric,
        case when metrics -> 'cv' ->> 'counted_by' is null
            then (metrics -> 'cv' ->> 'estimate')::numeric end
    ) as gate_estimate_by_post
from fnd.model_versions
order by created_at desc;
comment on column fnd.model_leaderboard.gate_counted_by is 'How the gate''s estimate counted posts: stories (each leak group once) or posts (every post once, versions trained before migration 013).';
comment on column fnd.model_leaderboard.gate_estimate_by_post is 'The gate metric counted by posts (every post once), beside gate_estimate.';
