-- fnd.drift_summary: the one current definition (fnd db upgrade recreates every view after the
-- numbered migrations). Edit here; a view is never re-declared in a migration.
-- requires: none (views this one selects from, created first)

-- The scorer ships calibrated P(fake) (a Platt slope fitted on the gate's out-of-fold scores),
-- and each scoring run's fake share is estimated from them (Saerens EM; label shift assumed).
create view fnd.drift_summary as
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

comment on view fnd.drift_summary is 'Drift reports with their metrics as columns, newest last by report_id.';
comment on column fnd.drift_summary.report_id is 'The report.';
comment on column fnd.drift_summary.computed_at is 'When it was computed.';
comment on column fnd.drift_summary.kind is 'batch or scoring_run.';
comment on column fnd.drift_summary.subject is 'Batch id or scoring run id.';
comment on column fnd.drift_summary.model_version is 'Reference model (its training snapshot).';
comment on column fnd.drift_summary.n_posts is 'Posts compared.';
comment on column fnd.drift_summary.flagged is 'A threshold was crossed.';
comment on column fnd.drift_summary.image_auc is 'Domain classifier ROC AUC on image features (0.5 = alike).';
comment on column fnd.drift_summary.text_auc is 'Domain classifier ROC AUC on text features (0.5 = alike).';
comment on column fnd.drift_summary.image_auc_bar is 'The image AUC above which drift is flagged (raised when few distinct pictures are compared).';
comment on column fnd.drift_summary.text_auc_bar is 'The text AUC above which drift is flagged (raised when few distinct texts are compared).';
comment on column fnd.drift_summary.predicted_fake_share is 'Share the model calls fake.';
comment on column fnd.drift_summary.train_fake_share is 'Fake share of the training snapshot.';
comment on column fnd.drift_summary.unseen_image_share is 'Share of pictures not in the training snapshot.';
comment on column fnd.drift_summary.undecided_share is 'Share of scores near the threshold.';
comment on column fnd.drift_summary.reasons is 'Why it was flagged.';
comment on column fnd.drift_summary.score_kl is 'KL divergence of the scores from the champion''s out-of-fold scores (ten bins); NULL for a champion without a recorded score histogram.';
comment on column fnd.drift_summary.outputs_check_passed is 'Whether the GX suite model_outputs passed on the verdicts (NULL: nothing scored yet).';
comment on column fnd.drift_summary.retrain_requested is 'This report asked for retraining (at most one per model version).';
comment on column fnd.drift_summary.estimated_fake_share is 'Fake share of the run''s posts estimated from the calibrated scores (EM, label shift assumed); NULL under FND_PRIOR_MIN_POSTS scored posts.';

grant select on fnd.drift_summary to fnd_analyst, fnd_reader;
