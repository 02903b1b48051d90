-- fnd.pending_labels: the one current definition (fnd db upgrade recreates every view after the
-- numbered migrations). Edit here; a view is never re-declared in a migration.
-- requires: none (views this one selects from, created first)

-- A label for a post fnd does not hold yet waits in fnd.labels: neither lost nor counted. It
-- applies (fnd.posts.label) the moment the post lands, and then leaves this view.
create view fnd.pending_labels as
select
    l.post_id,
    l.label,
    l.source,
    l.labelled_at,
    l.received_at,
    l.batch_id
from fnd.labels l
where not exists (select 1 from fnd.posts p where p.post_id = l.post_id);

comment on view fnd.pending_labels is 'Labels received for posts fnd does not hold yet; they apply when the post lands.';
comment on column fnd.pending_labels.post_id is 'The post the label is for (not ingested yet).';
comment on column fnd.pending_labels.label is '0 real, 1 fake.';
comment on column fnd.pending_labels.source is 'Who labelled.';
comment on column fnd.pending_labels.labelled_at is 'When the labeller says it was given, as sent.';
comment on column fnd.pending_labels.received_at is 'When fnd received it.';
comment on column fnd.pending_labels.batch_id is 'The label file (ingest batch) that brought it.';

grant select on fnd.pending_labels to fnd_analyst, fnd_reader;
