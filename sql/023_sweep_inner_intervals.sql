-- The sweep chooses as retraining chooses among kinds: the simplest candidate within one
-- standard error of the best estimate (fnd_core/pipeline/sweep.py, choose). The nested
-- estimate makes that choice again inside each outer fold, so each candidate's inner-fold
-- intervals are kept beside its inner estimates.
alter table fnd.sweep_candidates add column inner_intervals jsonb;
comment on column fnd.sweep_candidates.inner_intervals is
    'Per outer fold, the 90 % interval [low, high] of inner_estimates: the standard error the nested one-standard-error choice reads.';
