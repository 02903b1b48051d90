-- fnd.fake_picture_matches: the one current definition (fnd db upgrade recreates every view after
-- the numbered migrations). Edit here; a view is never re-declared in a migration.
-- requires: none (views this one selects from, created first)

-- Posts whose picture is one already labelled fake (the same picture resized, re-encoded or
-- border-cropped: fnd.prediction_evidence.matched), with the champion's verdict beside it.
create view fnd.fake_picture_matches as
select
    e.post_id,
    pr.label,
    pr.p_fake,
    e.match_post_id,
    e.match_distance,
    e.match_fake_posts,
    e.match_real_posts,
    p.text,
    p.image_uri,
    pr.model_version,
    e.computed_at
from fnd.prediction_evidence e
join fnd.model_versions mv on mv.version = e.model_version and mv.status = 'champion'
join fnd.predictions pr on pr.post_id = e.post_id and pr.model_version = e.model_version
join fnd.posts p on p.post_id = e.post_id
where e.matched and e.match_label = 1;

comment on view fnd.fake_picture_matches is 'Posts whose picture matches a picture labelled fake, with the champion''s verdict.';
comment on column fnd.fake_picture_matches.post_id is 'The post.';
comment on column fnd.fake_picture_matches.label is 'The champion''s verdict: fake or real.';
comment on column fnd.fake_picture_matches.p_fake is 'The champion''s probability that the post is fake.';
comment on column fnd.fake_picture_matches.match_post_id is 'A labelled post showing the same picture.';
comment on column fnd.fake_picture_matches.match_distance is 'Bits (of 64) by which the pictures'' perceptual hashes differ.';
comment on column fnd.fake_picture_matches.match_fake_posts is 'Labelled posts showing that picture labelled fake.';
comment on column fnd.fake_picture_matches.match_real_posts is 'Labelled posts showing that picture labelled real.';
comment on column fnd.fake_picture_matches.text is 'Post text.';
comment on column fnd.fake_picture_matches.image_uri is 'Post image in the store.';
comment on column fnd.fake_picture_matches.model_version is 'The champion.';
comment on column fnd.fake_picture_matches.computed_at is 'When the match was looked up.';

grant select on fnd.fake_picture_matches to fnd_analyst, fnd_reader;
