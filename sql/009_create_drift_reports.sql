-- Drift reports: per landed batch and per scoring run, how far the posts are from the
-- champion's training snapshot (fnd_core/drift.py). Analysts read the view.
create table fnd.drift_reports (
    report_id      bigint generated always as identity primary key,
    kind           text not null,
    subject        text not null,
    model_version  text not null references fnd.model_versions (version),
    computed_at    timestamptz not null default now(),
    n_posts        integer not null,
    metrics        jsonb not null,
    flagged        boolean not null,
    reasons        jsonb not null default '[]'::jsonb,
    run_id         text,
    constraint drift_reports_kind_is_known check (kind in ('batch', 'scoring_run')),
    constraint drift_reports_n_posts_not_negative check (n_posts >= 0),
    constraint drift_reports_reasons_is_a_list check (jsonb_typeof(reasons) = 'array'),
    constraint drift_reports_flagged_iff_reasons check (flagged = (jsonb_array_length(reasons) > 0))
);
create index drift_reports_recent on fnd.drift_reports (computed_at desc);
comment on table fnd.drift_reports is 'Drift of each landed batch or scoring run against the champion''s training snapshot.';
comment on column fnd.drift_reports.report_id is 'Surrogate key.';
comment on column fnd.drift_reports.kind is 'batch (a landed file) or scoring_run (the posts one fnd_score run scored).';
comment on column fnd.drift_reports.subject is 'The batch id or the scoring run id.';
comment on column fnd.drift_reports.model_version is 'The model whose training snapshot is the reference.';
comment on column fnd.drift_reports.computed_at is 'When the report was computed.';
comment on column fnd.drift_reports.n_posts is 'Posts in the batch or scored by the run.';
comment on column fnd.drift_reports.metrics is 'image_auc, text_auc (domain classifier over distinct pictures / texts) with their bars and counts, predicted_fake_share, train_fake_share, unseen_image_share, undecided_share, p_fake_quantiles, n_compared.';
comment on column fnd.drift_reports.flagged is 'Whether any threshold was crossed (then reasons says which).';
comment on column fnd.drift_reports.reasons is 'Readable reasons for the flag, one per crossed threshold.';
comment on column fnd.drift_reports.run_id is 'The Airflow run (or cli) that computed it.';

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
       reasons
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
grant select on fnd.drift_summary to fnd_analyst;
grant select on fnd.drift_reports, fnd.drift_summary to fnd_reader;
