-- fnd.daily_summary: the one current definition (fnd db upgrade recreates every view after the
-- numbered migrations). Edit here; a view is never re-declared in a migration.
-- requires: none (views this one selects from, created first)

create view fnd.daily_summary as
with verdicts as (
    select
        (coalesce(p.created_at, p.ingested_at) at time zone 'UTC')::date as day,
        pr.label
    from fnd.posts p
    left join fnd.predictions pr
        on pr.post_id = p.post_id
        and pr.model_version = (select version from fnd.model_versions where status = 'champion')
)
select
    day,
    count(*) as n_posts,
    count(label) as n_scored,
    count(*) filter (where label = 'fake') as n_fake,
    round(count(*) filter (where label = 'fake')::numeric / nullif(count(label), 0), 4)
        as fake_share
from verdicts
group by day
order by day;

comment on view fnd.daily_summary is 'Per UTC day of publication (else ingestion): posts, scored by the champion, flagged fake, fake share.';
comment on column fnd.daily_summary.day is 'UTC calendar day of publication, or of ingestion when the publication time is unknown; the same for every client, whatever its TimeZone.';
comment on column fnd.daily_summary.n_posts is 'Posts of that day.';
comment on column fnd.daily_summary.n_scored is 'Of those, scored by the champion.';
comment on column fnd.daily_summary.n_fake is 'Of those, flagged fake.';
comment on column fnd.daily_summary.fake_share is 'n_fake / n_scored.';

grant select on fnd.daily_summary to fnd_analyst, fnd_reader;
