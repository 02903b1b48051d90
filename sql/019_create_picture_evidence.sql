-- Evidence beside each verdict: the nearest labelled picture. Every post's picture carries
-- three perceptual hashes from ingest (the whole picture, its centre at 90 % and 80 %; see
-- fnd_core/io/picture_hash.py); at scoring, each post's whole-picture hash is compared with the
-- hashes of every labelled picture, and the nearest is recorded with the verdict.
alter table fnd.posts add column image_phashes bigint[];
comment on column fnd.posts.image_phashes is
    'Perceptual hashes of the picture (whole, centre 90 %, centre 80 %): computed at ingest, or when first needed for posts ingested before sql/019.';

create table fnd.prediction_evidence (
    post_id           text not null references fnd.posts (post_id),
    model_version     text not null references fnd.model_versions (version),
    match_post_id     text,
    match_label       smallint,
    match_distance    smallint,
    matched           boolean not null,
    match_fake_posts  integer,
    match_real_posts  integer,
    computed_at       timestamptz not null default now(),
    constraint prediction_evidence_pkey primary key (post_id, model_version),
    constraint prediction_evidence_label_is_binary check (match_label in (0, 1)),
    constraint prediction_evidence_distance_in_range check (match_distance between 0 and 64)
);
comment on table fnd.prediction_evidence is
    'The nearest labelled picture to each scored post''s picture: what an analyst checks first.';
comment on column fnd.prediction_evidence.post_id is 'The post scored.';
comment on column fnd.prediction_evidence.model_version is 'The version whose scoring run looked it up.';
comment on column fnd.prediction_evidence.match_post_id is 'A labelled post showing the nearest labelled picture (never the post itself); NULL: no labelled picture yet.';
comment on column fnd.prediction_evidence.match_label is 'That picture''s label: the majority of its labelled posts'' current labels (0 real, 1 fake).';
comment on column fnd.prediction_evidence.match_distance is 'Bits (of 64) by which the perceptual hashes differ: 0 the same picture, ~32 unrelated.';
comment on column fnd.prediction_evidence.matched is 'Whether the distance passes FND_PICTURE_MATCH_BITS: the same picture, resized, re-encoded or border-cropped.';
comment on column fnd.prediction_evidence.match_fake_posts is 'Labelled posts showing that picture labelled fake (the post itself not counted).';
comment on column fnd.prediction_evidence.match_real_posts is 'Labelled posts showing that picture labelled real (the post itself not counted).';
comment on column fnd.prediction_evidence.computed_at is 'When it was looked up (again on a rescore, against the labels of that moment).';
create index prediction_evidence_matched_idx on fnd.prediction_evidence (model_version)
    where matched;

grant select on fnd.prediction_evidence to fnd_reader;
