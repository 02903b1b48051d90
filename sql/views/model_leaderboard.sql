-- fnd.model_leaderboard: the one current definition (fnd db upgrade recreates every view after the
-- numbered migrations). Edit here; a view is never re-declared in a migration.
-- requires: none (views this one selects from, created first)

-- Round 3: the gate's folds hold out whole topics (news events, given or discovered), every
-- candidate kind (fusion, linear, text_linear, char_ngram) is estimated on them and the best
-- ships (fnd_core/pipeline/candidates.py). The estimate is counted by post again (the figure a
-- hold-out of new events measures); the story-counted one is kept beside it. The leaderboard
-- gains the kind that shipped, the estimate's 90-percent interval, the fold policy, the topics and
-- the selection record; older versions read as story-disjoint fusion models.
create view fnd.model_leaderboard as
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
        then coalesce((gate ->> 'estimate')::numeric, (metrics -> 'cv' ->> 'estimate')::numeric)
        else (metrics -> 'cv' -> 'posts' -> 'estimates'
            ->> coalesce(gate ->> 'metric', metrics -> 'cv' ->> 'metric'))::numeric
    end as gate_estimate_by_post,
    coalesce(metrics ->> 'kind', 'fusion') as kind,
    coalesce(metrics -> 'cv' ->> 'split_policy', 'story_disjoint') as gate_split_policy,
    -- the interval of the figure the gate read: the nested one's when it read that
    (case when (gate ->> 'estimate')::numeric
               = (metrics -> 'selection' -> 'nested' ->> 'estimate')::numeric
        then metrics -> 'selection' -> 'nested' -> 'interval'
        else metrics -> 'cv' -> 'interval' end ->> 0)::numeric as gate_interval_low,
    (case when (gate ->> 'estimate')::numeric
               = (metrics -> 'selection' -> 'nested' ->> 'estimate')::numeric
        then metrics -> 'selection' -> 'nested' -> 'interval'
        else metrics -> 'cv' -> 'interval' end ->> 1)::numeric as gate_interval_high,
    (metrics -> 'topics' ->> 'n_topics')::integer as n_topics,
    metrics -> 'topics' ->> 'source' as topic_source,
    metrics -> 'topics' -> 'support' as class_support,
    case when metrics -> 'cv' ->> 'counted_by' = 'stories'
        then (metrics -> 'cv' ->> 'estimate')::numeric
        else (metrics -> 'cv' -> 'stories' -> 'estimates'
            ->> coalesce(gate ->> 'metric', metrics -> 'cv' ->> 'metric'))::numeric
    end as gate_estimate_by_story,
    metrics -> 'selection' as selection,
    (metrics -> 'cv' ->> 'estimate')::numeric as winner_own_estimate,
    (metrics -> 'selection' -> 'nested' ->> 'estimate')::numeric as nested_estimate,
    metrics -> 'selection' -> 'sweep' ->> 'sweep_id' as sweep_id
from fnd.model_versions
order by created_at desc;

comment on view fnd.model_leaderboard is 'Every model version with its test metrics and gate decision, newest first.';
comment on column fnd.model_leaderboard.version is 'Model version.';
comment on column fnd.model_leaderboard.status is 'candidate, champion, rejected or retired.';
comment on column fnd.model_leaderboard.created_at is 'When training started.';
comment on column fnd.model_leaderboard.preset is 'Backbone preset.';
comment on column fnd.model_leaderboard.test_accuracy is 'Accuracy of the out-of-fold predictions of grouped cross-validation (older versions: of their test split).';
comment on column fnd.model_leaderboard.test_f1 is 'F1 (fake = positive), out-of-fold.';
comment on column fnd.model_leaderboard.test_roc_auc is 'ROC-AUC, out-of-fold.';
comment on column fnd.model_leaderboard.gate_decision is 'promote or reject.';
comment on column fnd.model_leaderboard.gate_reason is 'Why, in words.';
comment on column fnd.model_leaderboard.forced_by is 'Who forced the promotion, if anyone.';
comment on column fnd.model_leaderboard.n_train_rows is 'Training rows.';
comment on column fnd.model_leaderboard.data_window_start is 'Earliest ingested_at of the training data.';
comment on column fnd.model_leaderboard.data_window_end is 'Latest ingested_at of the training data.';
comment on column fnd.model_leaderboard.promoted_at is 'When it became champion.';
comment on column fnd.model_leaderboard.retired_at is 'When it was retired.';
comment on column fnd.model_leaderboard.gate_metric is 'The metric the gate decided on (balanced_accuracy or macro_f1).';
comment on column fnd.model_leaderboard.gate_estimate is 'The estimate the gate compared with the floor and the baselines: the nested one (choice inside the folds) where recorded, else the cross-validated estimate over topic folds.';
comment on column fnd.model_leaderboard.gate_estimate_fold_std is 'Spread (standard deviation) of the gate metric across folds.';
comment on column fnd.model_leaderboard.n_leak_groups is 'Leak groups in the snapshot (posts sharing a picture or caption are one group).';
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
comment on column fnd.model_leaderboard.gate_counted_by is 'How the gate''s estimate counted posts: stories (each leak group once) or posts (every post once, versions trained before migration 013).';
comment on column fnd.model_leaderboard.gate_estimate_by_post is 'The gate metric counted by posts (every post once).';
comment on column fnd.model_leaderboard.kind is 'The candidate kind that shipped: fusion, linear, text_linear or char_ngram.';
comment on column fnd.model_leaderboard.gate_split_policy is 'topic_disjoint (whole news events held out) or story_disjoint (versions trained before migration 015).';
comment on column fnd.model_leaderboard.gate_interval_low is 'Lower end of the estimate''s 90-percent interval (class-stratified bootstrap over topics).';
comment on column fnd.model_leaderboard.gate_interval_high is 'Upper end of the estimate''s 90-percent interval.';
comment on column fnd.model_leaderboard.n_topics is 'Topics (news events) in the training snapshot, before the largest-class correction.';
comment on column fnd.model_leaderboard.topic_source is 'Where the topics came from: field (the landing rows'' topic or event), discovered, or field+discovered.';
comment on column fnd.model_leaderboard.class_support is 'Per class (real, fake): stories and topics holding it in training, and those the estimate scored (JSON; null before 2026-12-07).';
comment on column fnd.model_leaderboard.gate_estimate_by_story is 'The gate metric with each story (a picture or caption and its reposts) counted once.';
comment on column fnd.model_leaderboard.selection is 'Every candidate kind''s estimate on the same folds, the winner, its margin and the spread.';

grant select on fnd.model_leaderboard to fnd_analyst, fnd_reader;
comment on column fnd.model_leaderboard.winner_own_estimate is 'The shipped recipe''s own cross-validated estimate: optimistic when it was chosen among several (the winner''s curse).';
comment on column fnd.model_leaderboard.nested_estimate is 'The estimate with the choice made inside the folds (nested cross-validation; a sweep''s or the kinds'' choice): what the gate reads when present.';
comment on column fnd.model_leaderboard.sweep_id is 'The model search (fnd.sweeps) the recipe won, if any.';
