-- Splits belong to training, not to ingest: a training snapshot forms leak groups (shared
-- pictures, near-identical texts, the optional `group` field) across batches and splits by them
-- (fnd_core/model/grouping.py); a split fixed per post at load time could not know them, and
-- nothing has read posts.split since grouped cross-validation replaced it. Its partial index
-- served "labelled posts" queries: the snapshot's filter (labelled, ingested up to a time) gets
-- its own.
drop index fnd.posts_labelled_idx;
alter table fnd.posts drop column split;
create index posts_labelled_ingested_at_idx on fnd.posts (ingested_at) where label is not null;
