-- The gate decides on a cross-validated estimate over grouped folds (fnd_core.evaluation), not
-- on a random test split: analysts see which metric and which number the decision rested on.
-- create or replace keeps every existing column in place and appends the new ones.

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
    (metrics -> 'leak' ->> 'n_groups')::integer as n_leak_groups
from fnd.model_versions
order by created_at desc;
comment on column fnd.model_leaderboard.test_accuracy is 'Accuracy of the out-of-fold predictions of grouped cross-validation (older versions: of their test split).';
comment on column fnd.model_leaderboard.test_f1 is 'F1 (fake = positive), out-of-fold.';
comment on column fnd.model_leaderboard.test_roc_auc is 'ROC-AUC, out-of-fold.';
comment on column fnd.model_leaderboard.gate_metric is 'The metric the gate decided on (balanced_accuracy or macro_f1).';
comment on column fnd.model_leaderboard.gate_estimate is 'Its cross-validated estimate over grouped folds: what the gate compared with the floor, the baselines and the champion.';
comment on column fnd.model_leaderboard.gate_estimate_fold_std is 'Spread (standard deviation) of the gate metric across folds.';
comment on column fnd.model_leaderboard.n_leak_groups is 'Leak groups in the snapshot (posts sharing a picture or caption are one group).';
