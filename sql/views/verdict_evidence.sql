-- fnd.verdict_evidence: the one current definition (fnd db upgrade recreates every view after the
-- numbered migrations). Edit here; a view is never re-declared in a migration.
-- requires: none (views this one selects from, created first)

-- The champion's verdicts with the evidence recorded beside them at scoring: how far each post
-- lies from the topics the champion learnt (novelty) and the nearest labelled picture.
create view fnd.verdict_evidence as
select
    pr.post_id,
    pr.label,
    pr.p_fake,
    e.novelty,
    e.matched,
    e.match_post_id,
    e.match_label,
    e.match_distance,
    pr.model_version,
    pr.scored_at
from fnd.predictions pr
join fnd.model_versions mv on mv.version = pr.model_version and mv.status = 'champion'
join fnd.prediction_evidence e on e.post_id = pr.post_id and e.model_version = pr.model_version;

comment on view fnd.verdict_evidence is 'The champion''s verdicts with their evidence: novelty and the nearest labelled picture.';
comment on column fnd.verdict_evidence.post_id is 'The post.';
comment on column fnd.verdict_evidence.label is 'fake or real, per the champion.';
comment on column fnd.verdict_evidence.p_fake is 'Champion probability that the post is fake.';
comment on column fnd.verdict_evidence.novelty is 'Percentile (0-100) of the post''s distance to the nearest training topic among the training posts'' own: high = far from anything the champion learnt.';
comment on column fnd.verdict_evidence.matched is 'Whether the post''s picture is a labelled picture (within FND_PICTURE_MATCH_BITS).';
comment on column fnd.verdict_evidence.match_post_id is 'A labelled post showing the nearest labelled picture (never the post itself).';
comment on column fnd.verdict_evidence.match_label is 'That picture''s label (0 real, 1 fake).';
comment on column fnd.verdict_evidence.match_distance is 'Bits (of 64) by which the perceptual hashes differ.';
comment on column fnd.verdict_evidence.model_version is 'The champion version.';
comment on column fnd.verdict_evidence.scored_at is 'When the champion scored the post.';

grant select on fnd.verdict_evidence to fnd_analyst, fnd_reader;
