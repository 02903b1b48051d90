-- Round 3: the gate's folds hold out whole topics (news events, given or discovered), every
-- candidate kind (fusion, linear, text_linear, char_ngram) is estimated on them and the best
-- ships (fnd_core/pipeline/candidates.py). The estimate is counted by post again (the figure a
-- hold-out of new events measures); the story-counted one is kept beside it. The leaderboard
-- gains the kind that shipped, the estimate's 90-percent interval, the fold policy, the topics and
-- the selection record; older versions read as story-disjoint fusion models.
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
    coalesce(
        (metrics -> 'baselines' -> 'text_lr' ->> 'estimate')::numeric,
        (metrics -> 'candidates' -> 'text_linear' ->> 'estimate')::numeric,
        case when metrics ->> 'kind' = 'text_linear'
            then (metrics -> 'cv' ->> 'estimate')::numeric end
    ) as baseline_text_lr,
    (metrics -> 'baselines' -> 'prior' ->> 'estimate')::numeric as baseline_prior,
    (metrics -> 'champion_recipe' -> 'cv' ->> 'estimate')::numeric as champion_recipe_estimate,
    metrics -> 'leak' as leak,
    gate ->> 'floor_set_by' as floor_set_by,
    artifact_uri,
    artifact_sha256,
    training_run_id,
    coalesce(metrics -> 'cv' ->> 'counted_by', 'posts') as gate_counted_by,
    case when coalesce(metrics -> 'cv' ->> 'counted_by', 'posts') = 'posts'
        then (metrics -> 'cv' ->> 'estimate')::numeric
        else (metrics -> 'cv' -> 'posts' -> 'estimates'
            ->> coalesce(gate ->> 'metric', metrics -> 'cv' ->> 'metric'))::numeric
    end as gate_estimate_by_post,
    coalesce(metrics ->> 'kind', 'fusion') as kind,
    coalesce(metrics -> 'cv' ->> 'split_policy', 'story_disjoint') as gate_split_policy,
    (metrics -> 'cv' -> 'interval' ->> 0)::numeric as gate_interval_low,
    (metrics -> 'cv' -> 'interval' ->> 1)::numeric as gate_interval_high,
    (metrics -> 'topics' ->> 'n_topics')::integer as n_topics,
    metrics -> 'topics' ->> 'source' as topic_source,
    case when metrics -> 'cv' ->> 'counted_by' = 'stories'
        then (metrics -> 'cv' ->> 'estimate')::numeric
        else (metrics -> 'cv' -> 'stories' -> 'estimates'
            ->> coalesce(gate ->> 'metric', metrics -> 'cv' ->> 'metric'))::numeric
    end as gate_estimate_by_story,
    metrics -> 'selection' as selection
from fnd.model_versions
order by created_at desc;
comment on column fnd.model_leaderboard.gate_estimate_by_post is 'The gate metric counted by posts (every post once).';
comment on column fnd.model_leaderboard.kind is 'The candidate kind that shipped: fusion, linear, text_linear or char_ngram.';
comment on column fnd.model_leaderboard.gate_split_policy is 'topic_disjoint (whole news events held out) or story_disjoint (versions trained before migration 015).';
comment on column fnd.model_leaderboard.gate_interval_low is 'Lower end of the estimate''s 90-percent interval (class-stratified bootstrap over topics).';
comment on column fnd.model_leaderboard.gate_interval_high is 'Upper end of the estimate''s 90-percent interval.';
comment on column fnd.model_leaderboard.gate_estimate_by_story is 'The gate metric with each story (a picture or caption and its reposts) counted once.';
comment on column fnd.model_leaderboard.selection is 'Every candidate kind''s estimate on the same folds, the winner, its margin and the spread.';
comment on column fnd.model_leaderboard.n_topics is 'Topics (news events) in the training snapshot, before the largest-class correction.';
comment on column fnd.model_leaderboard.topic_source is 'Where the topics came from: field (the landing rows'' topic or event), discovered, or field+discovered.';

-- The scorer ships calibrated P(fake) (a Platt slope fitted on the gate's out-of-fold scores),
-- and each scoring run's fake share is estimated from them (Saerens EM; label shift assumed).
create or replace view fnd.drift_summary as
select report_id, computed_at, kind, subject, model_version, n_posts, flagged,
       (metrics ->> 'image_auc')::float as image_auc,
       (metrics ->> 'text_auc')::float as text_auc,
       (metrics ->> 'image_auc_bar')::float as image_auc_bar,
       (metrics ->> 'text_auc_bar')::float as text_auc_bar,
       (metrics ->> 'predicted_fake_share')::float as predicted_fake_share,
       (metrics ->> 'train_fake_share')::float as train_fake_share,
       (metrics ->> 'unseen_image_share')::float as unseen_image_share,
       (metrics ->> 'undecided_share')::float as undecided_share,
       reasons,
       (metrics ->> 'score_kl')::float as score_kl,
       (metrics -> 'outputs_check' ->> 'success')::boolean as outputs_check_passed,
       retrain_requested,
       (metrics ->> 'estimated_fake_share')::float as estimated_fake_share
from fnd.drift_reports;
comment on column fnd.drift_summary.estimated_fake_share is 'Fake share of the run''s posts estimated from the calibrated scores (EM, label shift assumed); NULL under FND_PRIOR_MIN_POSTS scored posts.';
