-- fnd.label_conflicts: the one current definition (fnd db upgrade recreates every view after the
-- numbered migrations). Edit here; a view is never re-declared in a migration.
-- requires: none (views this one selects from, created first)

-- Posts whose sources disagree: each source's latest label is compared; posts.label holds the
-- one FND_LABEL_TRUST_ORDER picks (the latest received from the most trusted source).
create view fnd.label_conflicts as
with latest_per_source as (
    select distinct on (post_id, source) post_id, source, label, received_at
    from fnd.labels
    order by post_id, source, received_at desc, label_id desc
)
select
    s.post_id,
    p.label as current_label,
    count(*)::integer as n_sources,
    jsonb_object_agg(s.source, s.label order by s.source) as label_by_source,
    max(s.received_at) as last_received_at
from latest_per_source s
left join fnd.posts p on p.post_id = s.post_id
group by s.post_id, p.label
having count(distinct s.label) > 1;

comment on view fnd.label_conflicts is 'Posts whose label sources disagree (each source''s latest label).';
comment on column fnd.label_conflicts.post_id is 'The post.';
comment on column fnd.label_conflicts.current_label is 'posts.label: the label the trust order picked (NULL: post not ingested yet).';
comment on column fnd.label_conflicts.n_sources is 'Sources that labelled the post.';
comment on column fnd.label_conflicts.label_by_source is 'Each source''s latest label: {"source": 0 or 1}.';
comment on column fnd.label_conflicts.last_received_at is 'When the latest of those labels was received.';

grant select on fnd.label_conflicts to fnd_analyst, fnd_reader;
