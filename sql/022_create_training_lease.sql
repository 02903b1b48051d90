-- At most one retraining or model search at a time (fnd_core/pipeline/training_lease.py).
-- Two runs training at once would halve each other's cores, race for the champion and gate
-- against a champion that moves under them. A run holds the one lease row from before its
-- snapshot to its end; a holder that died without releasing (a killed worker, a lost
-- scheduler) loses the lease when it expires, and the next run takes it over, recorded.
create table fnd.training_lease (
    name             text primary key check (name = 'training'),
    holder           text not null,
    acquired_at      timestamptz not null default now(),
    renewed_at       timestamptz not null default now(),
    expires_at       timestamptz not null,
    taken_over_from  text
);
comment on table fnd.training_lease is
    'The one training lease: which retraining or sweep run holds it, since when, until when. No row: no run is training.';
comment on column fnd.training_lease.name is 'Always ''training'': one lease for every kind of training run.';
comment on column fnd.training_lease.holder is
    'The run holding it: "<dag_id>/<run_id>" for a DAG run, "cli/<command>/<host>/<pid>" for the fnd CLI.';
comment on column fnd.training_lease.acquired_at is 'When the holder took the lease.';
comment on column fnd.training_lease.renewed_at is 'When the holder last extended it (each training step does).';
comment on column fnd.training_lease.expires_at is
    'Past this, the holder is taken for dead and the next run may take the lease over.';
comment on column fnd.training_lease.taken_over_from is
    'The expired holder this one took the lease from, if any (a run that died without releasing it).';
