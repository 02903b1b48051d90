-- The model_outputs GX suite joins the drift reports (fnd_core/output_checks.py): the view gains
-- the score distribution's divergence and whether the suite passed. Columns are added at the
-- end, so `create or replace` keeps every existing column and its comment.
-- A flagged scoring run may ask for retraining (asset fnd://drift) once per champion: the
-- partial unique index makes "once" hold under concurrent runs, and a retrain that cannot fix
-- the drift (the new posts are unlabelled) does not loop retrain -> rescore -> drift.
alter table fnd.drift_reports add column retrain_requested boolean not null default false;
comment on column fnd.drift_reports.retrain_requested is 'This report asked for retraining (updated fnd://drift); at most one per model version.';
create unique index drift_reports_one_retrain_per_model on fnd.drift_reports (model_version)
    where retrain_requested;

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
       retrain_requested
from fnd.drift_reports;
comment on column fnd.drift_summary.score_kl is 'KL divergence of the scores from the champion''s out-of-fold scores (ten bins); NULL for a champion without a recorded score histogram.';
comment on column fnd.drift_summary.outputs_check_passed is 'Whether the GX suite model_outputs passed on the verdicts (NULL: nothing scored yet).';
comment on column fnd.drift_summary.retrain_requested is 'This report asked for retraining (at most one per model version).';
