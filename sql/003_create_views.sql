-- Views for people: the stable interface analysts query (and the only thing fnd_analyst sees).

create view fnd.latest_predictions as
select
    p.post_id,
    pr.label,
    pr.p_fake,
    p.text,
    p.image_uri,
    pr.model_version,
    pr.scored_at,
    p.created_at,
    p.label as true_label
from fnd.predictions pr
join fnd.model_versions mv on mv.version = pr.model_version and mv.status = 'champion'
join fnd.posts p on p.post_id = pr.post_id;
comment on view fnd.latest_predictions is 'The current champion''s verdict per post, with the post text and image.';
comment on column fnd.latest_predictions.post_id is 'The post.';
comment on column fnd.latest_predictions.label is 'fake or real, per the champion.';
comment on column fnd.latest_predictions.p_fake is 'Champion probability that the post is fake.';
comment on column fnd.latest_predictions.text is 'Post text.';
comment on column fnd.latest_predictions.image_uri is 'Post image in the store.';
comment on column fnd.latest_predictions.model_version is 'The champion version.';
comment on column fnd.latest_predictions.scored_at is 'When the champion scored the post.';
comment on column fnd.latest_predictions.created_at is 'When the post was published (source time).';
comment on column fnd.latest_predictions.true_label is 'Ground truth when known: 0 real, 1 fake.';

create view fnd.daily_summary as
with verdicts as (
    select
        date_trunc('day', coalesce(p.created_at, p.ingested_at))::date as day,
        lp.label
    from fnd.posts p
    left join fnd.latest_predictions lp on lp.post_id = p.post_id
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
comment on view fnd.daily_summary is 'Per publication day: posts, scored by the champion, flagged fake, fake share.';
comment on column fnd.daily_summary.day is 'Publication day (UTC), or ingestion day when unknown.';
comment on column fnd.daily_summary.n_posts is 'Posts of that day.';
comment on column fnd.daily_summary.n_scored is 'Of those, scored by the champion.';
comment on column fnd.daily_summary.n_fake is 'Of those, flagged fake.';
comment on column fnd.daily_summary.fake_share is 'n_fake / n_scored.';

create view fnd.model_leaderboard as
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
    retired_at
from fnd.model_versions
order by created_at desc;
comment on view fnd.model_leaderboard is 'Every model version with its test metrics and gate decision, newest first.';
comment on column fnd.model_leaderboard.version is 'Model version.';
comment on column fnd.model_leaderboard.status is 'candidate, champion, rejected or retired.';
comment on column fnd.model_leaderboard.created_at is 'When training started.';
comment on column fnd.model_leaderboard.preset is 'Backbone preset.';
comment on column fnd.model_leaderboard.test_accuracy is 'Accuracy on the held-out test split.';
comment on column fnd.model_leaderboard.test_f1 is 'F1 (fake = positive) on the test split.';
comment on column fnd.model_leaderboard.test_roc_auc is 'ROC-AUC on the test split.';
comment on column fnd.model_leaderboard.gate_decision is 'promote or reject.';
comment on column fnd.model_leaderboard.gate_reason is 'Why, in words.';
comment on column fnd.model_leaderboard.forced_by is 'Who forced the promotion, if anyone.';
comment on column fnd.model_leaderboard.n_train_rows is 'Training rows.';
comment on column fnd.model_leaderboard.data_window_start is 'Earliest ingested_at of the training data.';
comment on column fnd.model_leaderboard.data_window_end is 'Latest ingested_at of the training data.';
comment on column fnd.model_leaderboard.promoted_at is 'When it became champion.';
comment on column fnd.model_leaderboard.retired_at is 'When it was retired.';
