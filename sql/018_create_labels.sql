-- Labels as their own input. Fact-checkers send a verdict for a post id days after the post
-- was scored; fnd.labels keeps every one, append-only, with who said it (source), when they
-- said it (labelled_at, as sent) and when fnd got it (received_at). posts.label is derived:
-- the latest label received from the most trusted source (FND_LABEL_TRUST_ORDER). A label for a
-- post fnd does not hold yet waits here (no foreign key) and applies when the post lands.
-- Labels that came inside post rows are labels too: the backfill below, and every ingest from
-- now on, records them with source 'post_file'.

-- Settings the views and functions read (synced from FND_* settings by every fnd process that
-- writes what they read): SQL cannot read an environment variable.
create table fnd.settings (
    name        text primary key,
    value       text not null,
    set_at      timestamptz not null default now()
);
comment on table fnd.settings is
    'Settings read inside the database (views, label derivation), synced from FND_* settings.';
comment on column fnd.settings.name is 'Setting name, e.g. label_trust_order.';
comment on column fnd.settings.value is 'Its value as text.';
comment on column fnd.settings.set_at is 'When fnd last wrote it.';

create function fnd.setting(setting_name text, fallback text) returns text
language sql stable as $$
    select coalesce((select value from fnd.settings where name = setting_name), fallback)
$$;
comment on function fnd.setting(text, text) is
    'The value of a row of fnd.settings, or the fallback when fnd has not written it.';

create table fnd.labels (
    label_id     bigint generated always as identity primary key,
    post_id      text not null,
    label        smallint not null,
    source       text not null,
    labelled_at  timestamptz,
    received_at  timestamptz not null default now(),
    batch_id     bigint references fnd.ingest_batches (batch_id),
    constraint labels_label_is_binary check (label in (0, 1)),
    constraint labels_post_id_not_blank check (length(btrim(post_id)) > 0),
    constraint labels_source_is_a_name check (source ~ '^[A-Za-z0-9][A-Za-z0-9_.:@/-]{0,63}$')
);
comment on table fnd.labels is
    'Every label received, append-only: posts.label is derived from it (latest from the most trusted source).';
comment on column fnd.labels.label_id is 'Surrogate key; also orders labels received in the same instant.';
comment on column fnd.labels.post_id is 'The post labelled; may not be ingested yet (pending, see fnd.pending_labels).';
comment on column fnd.labels.label is '0 real, 1 fake.';
comment on column fnd.labels.source is 'Who labelled: the label file''s source column, label_file when it had none, post_file for a label inside a post row.';
comment on column fnd.labels.labelled_at is 'When the labeller says the label was given, as sent (NULL: not sent).';
comment on column fnd.labels.received_at is 'When fnd received the label: realized performance counts a label only if it came after the verdict.';
comment on column fnd.labels.batch_id is 'The landing file (ingest batch) that brought it; NULL for none.';
create index labels_post_id_idx on fnd.labels (post_id, received_at);
create index labels_batch_id_idx on fnd.labels (batch_id);

create function fnd.refuse_label_change() returns trigger
language plpgsql as $$
begin
    raise exception using
        message = 'fnd.labels is append-only: a correction is a new label, not an ' || tg_op,
        errcode = 'integrity_constraint_violation';
end
$$;
comment on function fnd.refuse_label_change() is 'fnd.labels: refuses UPDATE and DELETE.';
create trigger labels_are_append_only
    before update or delete on fnd.labels
    for each row execute function fnd.refuse_label_change();
alter table fnd.labels enable always trigger labels_are_append_only;

-- The current label of each post as of a moment: the latest received (at or before as_of)
-- from the most trusted source; sources outside the trust order rank after those in it.
-- post_ids (optional) limits it to those posts: passed as a literal array, the planner folds
-- the NULL tests away and reads only their rows through labels_post_id_idx.
create function fnd.label_trust_order() returns text[]
language sql stable as $$
    select string_to_array(fnd.setting('label_trust_order', ''), ',')
$$;
comment on function fnd.label_trust_order() is
    'FND_LABEL_TRUST_ORDER as an array, most trusted source first (empty: every source equal).';

create function fnd.labels_as_of(as_of timestamptz, post_ids text[] default null)
returns table (post_id text, label smallint, source text, received_at timestamptz)
language sql stable as $$
    select distinct on (l.post_id) l.post_id, l.label, l.source, l.received_at
    from fnd.labels l
    where (as_of is null or l.received_at <= as_of)
      and (post_ids is null or l.post_id = any(post_ids))
    order by l.post_id,
             coalesce(array_position((select fnd.label_trust_order()), l.source), 2147483647),
             l.received_at desc, l.label_id desc
$$;
comment on function fnd.labels_as_of(timestamptz, text[]) is
    'Each post''s label as it stood at as_of (NULL: now): latest received from the most trusted source.';

-- Backfill: every label fnd holds came inside a post row.
insert into fnd.labels (post_id, label, source, received_at, batch_id)
select post_id, label, 'post_file', coalesce(label_updated_at, ingested_at), batch_id
from fnd.posts where label is not null
order by coalesce(label_updated_at, ingested_at), post_id;

comment on column fnd.posts.label is
    'Current label, derived from fnd.labels (latest received from the most trusted source): NULL unlabelled, 0 real, 1 fake.';
comment on column fnd.posts.label_updated_at is
    'When the current label last changed after the post was ingested (NULL: never).';
comment on column fnd.ingest_batches.n_accepted is
    'Rows stored: posts inserted into fnd.posts, or labels appended to fnd.labels.';
comment on column fnd.ingest_batches.n_duplicate is
    'Rows already held: a post_id already in fnd.posts, or the same label from the same source again.';

-- The label-free estimate per model version and UTC week of the first verdict (confidence
-- based, as NannyML's CBPE), written after scoring by fnd_core.observe.performance.
create table fnd.performance_estimates (
    model_version          text not null references fnd.model_versions (version),
    week                   date not null,
    n_verdicts             integer not null,
    estimated_fake_share   real not null,
    estimated_balanced_accuracy real,
    estimated_fake_precision real,
    estimated_fake_recall  real,
    computed_at            timestamptz not null default now(),
    constraint performance_estimates_pkey primary key (model_version, week),
    constraint performance_estimates_share_is_probability
        check (estimated_fake_share between 0 and 1)
);
comment on table fnd.performance_estimates is
    'Label-free estimate of each version''s weekly performance from its calibrated first verdicts.';
comment on column fnd.performance_estimates.model_version is 'The model version.';
comment on column fnd.performance_estimates.week is 'Monday of the UTC week of the first verdicts.';
comment on column fnd.performance_estimates.n_verdicts is 'First verdicts of that version in that week given while no label of the post was known (hindsight left out, as realized figures do).';
comment on column fnd.performance_estimates.estimated_fake_share is 'Fake share of the week''s posts estimated from p_fake (Saerens EM, label shift assumed).';
comment on column fnd.performance_estimates.estimated_balanced_accuracy is 'Expected balanced accuracy of the first verdicts, p_fake re-weighted to the estimated share.';
comment on column fnd.performance_estimates.estimated_fake_precision is 'Expected precision on fake, same way.';
comment on column fnd.performance_estimates.estimated_fake_recall is 'Expected recall on fake, same way.';
comment on column fnd.performance_estimates.computed_at is 'When it was last computed.';

create table fnd.performance_alerts (
    model_version          text not null references fnd.model_versions (version),
    week                   date not null,
    realized_balanced_accuracy real not null,
    lower_bound            real not null,
    gate_estimate_by_post  real not null,
    n_labelled             integer not null,
    alerted_at             timestamptz not null default now(),
    run_id                 text,
    constraint performance_alerts_pkey primary key (model_version, week)
);
comment on table fnd.performance_alerts is
    'Realized balanced accuracy that fell below the gate''s figure: alerted once per version and week.';
comment on column fnd.performance_alerts.model_version is 'The champion whose verdicts were judged.';
comment on column fnd.performance_alerts.week is 'Monday of the UTC week of the first verdicts.';
comment on column fnd.performance_alerts.realized_balanced_accuracy is 'Realized balanced accuracy when alerted.';
comment on column fnd.performance_alerts.lower_bound is 'Lower end of its 95-percent interval (normal approximation per class).';
comment on column fnd.performance_alerts.gate_estimate_by_post is 'The gate''s post-counted estimate it fell below (by more than FND_REALIZED_ALERT_MARGIN).';
comment on column fnd.performance_alerts.n_labelled is 'Labelled verdicts behind the figure.';
comment on column fnd.performance_alerts.alerted_at is 'When the alert was sent.';
comment on column fnd.performance_alerts.run_id is 'Airflow run id (or cli) that alerted.';

-- Analysts read views (fnd.realized_performance, fnd.pending_labels, fnd.label_conflicts);
-- the settings table too, since those views read it through fnd.setting() as the caller.
grant select on fnd.settings to fnd_analyst;
grant select on fnd.settings, fnd.labels, fnd.performance_estimates, fnd.performance_alerts
    to fnd_reader;
