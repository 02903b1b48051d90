-- Model search (fnd sweep, the fnd_sweep DAG; fnd_core/pipeline/sweep.py). A sweep estimates
-- each candidate recipe of a search space on the retraining's topic folds; the winner's honest
-- estimate is nested (the choice made again inside every outer fold), recorded beside the
-- winner's own inner figure so that the optimism of picking the best of many can be seen.
create table fnd.sweeps (
    sweep_id         text primary key,
    run_id           text not null,
    snapshot_as_of   timestamptz not null,
    space            jsonb not null,
    space_sha256     text not null,
    budget           integer not null check (budget between 1 and 256),
    n_candidates     integer not null check (n_candidates >= 0),
    status           text not null default 'running'
                     check (status in ('running', 'selected', 'failed')),
    winner           integer,
    selection        jsonb,
    version          text,
    started_at       timestamptz not null default now(),
    finished_at      timestamptz
);
comment on table fnd.sweeps is
    'One model search: its space (as given, with its sha256), budget, the winner and its honest (nested) estimate, and the model version trained from it.';
comment on column fnd.sweeps.selection is
    'The choice: winner, its inner estimate (naive), the nested estimate with its interval, the candidate chosen in each outer fold.';
comment on column fnd.sweeps.version is 'The model version trained from the winner (then gated as any candidate).';

create table fnd.sweep_candidates (
    sweep_id         text not null references fnd.sweeps (sweep_id) on delete cascade,
    candidate        integer not null check (candidate >= 0),
    config           jsonb not null,
    status           text not null default 'pending'
                     check (status in ('pending', 'done', 'failed')),
    estimate         double precision,
    estimate_spread  double precision,
    estimate_by_story double precision,
    interval_low     double precision,
    interval_high    double precision,
    recall_real      double precision,
    recall_fake      double precision,
    inner_estimates  jsonb,
    plan_sha256      text,
    oof_p_fake       real[],
    error            text,
    seconds          double precision,
    finished_at      timestamptz,
    primary key (sweep_id, candidate)
);
comment on table fnd.sweep_candidates is
    'One row per candidate of a sweep: its recipe, its topic-disjoint estimate (counted by post; by story beside it) and spread across folds, and its status.';
comment on column fnd.sweep_candidates.config is 'The candidate''s parameters (only those that matter to its kind).';
comment on column fnd.sweep_candidates.estimate is 'Pooled out-of-fold gate metric on the topic folds, counted by post, mean over repeats: the inner figure the choice reads.';
comment on column fnd.sweep_candidates.estimate_spread is 'Standard deviation of the gate metric across folds.';
comment on column fnd.sweep_candidates.inner_estimates is 'Its estimate on the inner topic folds of each outer fold (what the nested choice reads).';
comment on column fnd.sweep_candidates.oof_p_fake is 'Out-of-fold P(fake) of every snapshot post on the outer folds (first repeat), in snapshot order.';
comment on column fnd.sweep_candidates.error is 'Why the candidate failed; a failed candidate never sinks the sweep.';
comment on column fnd.sweeps.sweep_id is 'Sweep id: a function of the run, snapshot, space and budget (a retried task finds its sweep).';
comment on column fnd.sweeps.run_id is 'The Airflow run (or cli) that started it.';
comment on column fnd.sweeps.snapshot_as_of is 'The training snapshot: labelled posts ingested up to this time.';
comment on column fnd.sweeps.space is 'The search space as given (sweeps/default.yaml or the trigger form).';
comment on column fnd.sweeps.space_sha256 is 'sha256 of the space''s canonical JSON.';
comment on column fnd.sweeps.budget is 'Most candidates asked for.';
comment on column fnd.sweeps.n_candidates is 'Distinct candidates the space expanded to within the budget.';
comment on column fnd.sweeps.status is 'running, selected (a winner chosen) or failed (no candidate finished).';
comment on column fnd.sweeps.winner is 'The winning candidate (fnd.sweep_candidates.candidate): the best estimate.';
comment on column fnd.sweeps.started_at is 'When the sweep was recorded.';
comment on column fnd.sweeps.finished_at is 'When it was last updated (selection, or the version trained).';
comment on column fnd.sweep_candidates.sweep_id is 'The sweep (fnd.sweeps).';
comment on column fnd.sweep_candidates.candidate is 'Its number within the sweep (the mapped task''s index).';
comment on column fnd.sweep_candidates.status is 'pending, done or failed.';
comment on column fnd.sweep_candidates.estimate_by_story is 'The same estimate with every story (a picture and its reposts) counted once.';
comment on column fnd.sweep_candidates.interval_low is 'Lower end of the estimate''s 90-percent interval (class-stratified bootstrap over topics).';
comment on column fnd.sweep_candidates.interval_high is 'Upper end of that interval.';
comment on column fnd.sweep_candidates.recall_real is 'Out-of-fold recall of real posts.';
comment on column fnd.sweep_candidates.recall_fake is 'Out-of-fold recall of fake posts.';
comment on column fnd.sweep_candidates.plan_sha256 is 'Identity of the outer folds it was scored on (all of a sweep''s must match).';
comment on column fnd.sweep_candidates.seconds is 'Wall time of its estimate.';
comment on column fnd.sweep_candidates.finished_at is 'When its estimate was recorded.';
