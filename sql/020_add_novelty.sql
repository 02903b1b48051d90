-- Novelty beside each verdict: how far the post lies from the topics the model learnt, as a
-- percentile of the training posts' own distances (fnd_core/model/novelty.py). 50: as typical
-- as a training post; 99: farther than 99 % of them (the posts of a new event land there).
alter table fnd.prediction_evidence add column novelty real;
alter table fnd.prediction_evidence add constraint prediction_evidence_novelty_in_range
    check (novelty between 0 and 100);
comment on column fnd.prediction_evidence.novelty is
    'Percentile (0-100) of the post''s distance to the nearest training topic among the training posts'' own distances: high = far from anything the model learnt; NULL: a model saved without a novelty reference.';
comment on table fnd.prediction_evidence is
    'Evidence beside each verdict: the nearest labelled picture (what an analyst checks first) and how far the post lies from the training topics.';
