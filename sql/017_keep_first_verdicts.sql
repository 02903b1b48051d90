-- Each model version's first verdict on a post survives rescoring: realized performance is
-- judged on what analysts saw first, and a rescore (which rewrites p_fake, label, threshold,
-- scored_at) must not move a verdict's date past the label that arrived after it.
-- A trigger keeps the invariant for every writer (the scorer, an analyst's INSERT, a restore):
-- an insert records the verdict as the first one unless given; an update never changes it.
alter table fnd.predictions
    add column first_p_fake real,
    add column first_label text,
    add column first_scored_at timestamptz;
update fnd.predictions
   set first_p_fake = p_fake, first_label = label, first_scored_at = scored_at;
alter table fnd.predictions
    alter column first_p_fake set not null,
    alter column first_label set not null,
    alter column first_scored_at set not null,
    add constraint predictions_first_p_fake_is_probability check (first_p_fake between 0 and 1),
    add constraint predictions_first_label_is_known check (first_label in ('fake', 'real'));
comment on column fnd.predictions.first_p_fake is
    'p_fake of this version''s first verdict on the post; kept when the post is rescored.';
comment on column fnd.predictions.first_label is
    'label of this version''s first verdict on the post; kept when the post is rescored.';
comment on column fnd.predictions.first_scored_at is
    'When this version first scored the post; scored_at moves on a rescore, this does not.';

create function fnd.keep_first_verdict() returns trigger
language plpgsql as $$
begin
    if tg_op = 'INSERT' then
        new.first_p_fake := coalesce(new.first_p_fake, new.p_fake);
        new.first_label := coalesce(new.first_label, new.label);
        new.first_scored_at := coalesce(new.first_scored_at, new.scored_at);
    else
        new.first_p_fake := old.first_p_fake;
        new.first_label := old.first_label;
        new.first_scored_at := old.first_scored_at;
    end if;
    return new;
end
$$;
comment on function fnd.keep_first_verdict() is
    'fnd.predictions: records a verdict as the first one on insert; keeps it on every update.';
create trigger predictions_keep_first_verdict
    before insert or update on fnd.predictions
    for each row execute function fnd.keep_first_verdict();
-- Always, replica sessions included: a bulk load that skips foreign-key checks
-- (session_replication_role = replica) still records first verdicts.
alter table fnd.predictions enable always trigger predictions_keep_first_verdict;
