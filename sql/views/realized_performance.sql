-- fnd.realized_performance: the one current definition (fnd db upgrade recreates every view after
-- the numbered migrations). Edit here; a view is never re-declared in a migration.
-- requires: model_leaderboard

-- How each model version really did, once labels arrived: per version and UTC week of its
-- first verdict, counted by post, each post judged by its current label. A verdict counts only
-- if every label of its post was received after the verdict was first given: one given while a
-- label was already known (a training post, a label that was pending) is hindsight, counted
-- apart. The label-free estimate of the same week (fnd.performance_estimates) stands beside it,
-- with the gate's figures for the version.
create view fnd.realized_performance as
with verdicts as (
    select
        pr.model_version,
        (date_trunc('week', pr.first_scored_at at time zone 'UTC'))::date as week,
        pr.first_p_fake::float8 as p,
        (pr.first_label = 'fake') as said_fake,
        p.label as truth,
        exists (
            select 1 from fnd.labels l
            where l.post_id = pr.post_id and l.received_at <= pr.first_scored_at
        ) as hindsight
    from fnd.predictions pr
    join fnd.posts p on p.post_id = pr.post_id
),
judged as (
    select v.*, e.estimated_fake_share::float8 as share
    from verdicts v
    left join fnd.performance_estimates e
        on e.model_version = v.model_version and e.week = v.week
),
counted as (
    select
        model_version,
        week,
        count(*)::integer as n_verdicts,
        count(*) filter (where hindsight)::integer as n_hindsight,
        count(*) filter (where truth is not null and not hindsight)::integer as n_labelled,
        count(*) filter (where truth = 1 and not hindsight)::integer as n_fake,
        count(*) filter (where truth = 0 and not hindsight)::integer as n_real,
        count(*) filter (where truth = 1 and not hindsight and said_fake)::integer as tp,
        count(*) filter (where truth = 0 and not hindsight and said_fake)::integer as fp,
        count(*) filter (where truth = 0 and not hindsight and not said_fake)::integer as tn,
        count(*) filter (where truth = 1 and not hindsight and not said_fake)::integer as fn
    from judged
    group by model_version, week
),
calibration_bins as (  -- p_fake re-weighted to the week's estimated fake share, 10 bins
    select model_version, week, count(*) as n, avg(q) as mean_p, avg(truth) as mean_truth
    from (
        select model_version, week, truth,
               share * p / (share * p + (1 - share) * (1 - p)) as q
        from judged
        where truth is not null and not hindsight and share is not null
    ) adjusted
    group by model_version, week, least(width_bucket(q, 0, 1, 10), 10)
),
calibration as (
    select model_version, week,
           sum(n * abs(mean_p - mean_truth)) / sum(n) as ece
    from calibration_bins
    group by model_version, week
),
policy as (
    select fnd.setting('realized_min_labels_per_class', '30')::integer as min_per_class
)
select
    c.model_version,
    c.week,
    c.n_verdicts,
    c.n_labelled,
    c.n_fake,
    c.n_real,
    c.n_hindsight,
    case when c.n_fake >= policy.min_per_class and c.n_real >= policy.min_per_class
            and c.n_fake > 0 and c.n_real > 0
        then round(((c.tp::numeric / c.n_fake + c.tn::numeric / c.n_real) / 2), 4)
    end as balanced_accuracy,
    round(c.tp::numeric / nullif(c.tp + c.fp, 0), 4) as fake_precision,
    round(c.tp::numeric / nullif(c.n_fake, 0), 4) as fake_recall,
    round(cal.ece::numeric, 4) as expected_calibration_error,
    round(e.estimated_balanced_accuracy::numeric, 4) as estimated_balanced_accuracy,
    round(e.estimated_fake_share::numeric, 4) as estimated_fake_share,
    round(e.estimated_fake_precision::numeric, 4) as estimated_fake_precision,
    round(e.estimated_fake_recall::numeric, 4) as estimated_fake_recall,
    lb.gate_estimate,
    lb.gate_estimate_by_post,
    c.tp,
    c.fp,
    c.tn,
    c.fn,
    e.computed_at as estimated_at
from counted c
cross join policy
left join calibration cal on cal.model_version = c.model_version and cal.week = c.week
left join fnd.performance_estimates e on e.model_version = c.model_version and e.week = c.week
left join fnd.model_leaderboard lb on lb.version = c.model_version
order by c.model_version, c.week;

comment on view fnd.realized_performance is 'Per model version and UTC week of its first verdicts: how the verdicts did against the labels that arrived after them, beside the label-free estimate and the gate''s figures.';
comment on column fnd.realized_performance.model_version is 'The model version.';
comment on column fnd.realized_performance.week is 'Monday of the UTC week of the version''s first verdicts.';
comment on column fnd.realized_performance.n_verdicts is 'First verdicts of the version in the week.';
comment on column fnd.realized_performance.n_labelled is 'Of those, posts with a current label, all received after the verdict: what the figures count.';
comment on column fnd.realized_performance.n_fake is 'Labelled verdicts whose post is labelled fake.';
comment on column fnd.realized_performance.n_real is 'Labelled verdicts whose post is labelled real.';
comment on column fnd.realized_performance.n_hindsight is 'Verdicts excluded: a label of the post was received before the verdict was first given.';
comment on column fnd.realized_performance.balanced_accuracy is 'Mean of fake and real recall; NULL unless the week holds FND_REALIZED_MIN_LABELS_PER_CLASS labels of each class.';
comment on column fnd.realized_performance.fake_precision is 'Of the labelled verdicts saying fake, the share labelled fake.';
comment on column fnd.realized_performance.fake_recall is 'Of the labelled fake posts, the share the verdicts called fake.';
comment on column fnd.realized_performance.expected_calibration_error is 'ECE over 10 equal bins of p_fake re-weighted to the week''s estimated fake share (NULL: no estimate yet).';
comment on column fnd.realized_performance.estimated_balanced_accuracy is 'The label-free estimate of the week (fnd.performance_estimates), over its verdicts that are not hindsight, labelled yet or not.';
comment on column fnd.realized_performance.estimated_fake_share is 'The week''s fake share estimated from p_fake (label shift assumed).';
comment on column fnd.realized_performance.estimated_fake_precision is 'Label-free estimate of fake precision, beside fake_precision.';
comment on column fnd.realized_performance.estimated_fake_recall is 'Label-free estimate of fake recall, beside fake_recall.';
comment on column fnd.realized_performance.gate_estimate is 'The gate''s estimate for the version (as in fnd.model_leaderboard).';
comment on column fnd.realized_performance.gate_estimate_by_post is 'The gate''s estimate counted by post: what realized balanced accuracy is compared with.';
comment on column fnd.realized_performance.tp is 'Labelled fake, said fake.';
comment on column fnd.realized_performance.fp is 'Labelled real, said fake.';
comment on column fnd.realized_performance.tn is 'Labelled real, said real.';
comment on column fnd.realized_performance.fn is 'Labelled fake, said real.';
comment on column fnd.realized_performance.estimated_at is 'When the label-free estimate was computed.';

grant select on fnd.realized_performance to fnd_analyst, fnd_reader;
