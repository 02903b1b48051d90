-- fnd.latest_predictions: the one current definition (fnd db upgrade recreates every view after the
-- numbered migrations). Edit here; a view is never re-declared in a migration.
-- requires: none (views this one selects from, created first)

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

grant select on fnd.latest_predictions to fnd_analyst, fnd_reader;
