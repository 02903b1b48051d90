"""
### fnd_sweep — model search: candidate recipes as mapped tasks, the winner gated honestly

0. **claim_training_lease** / **release_training_lease**: as `fnd_retrain`, at most one
   retraining or sweep at a time;
1. **snapshot** and **validate_snapshot**: as `fnd_retrain` (the labelled posts up to now;
   the `training_set` suite);
2. **start**: the search space (the form's, else `sweeps/default.yaml`) expanded to at most
   `budget` candidates, recorded in `fnd.sweep_candidates`; the snapshot encoded once (every
   candidate reads the shared feature cache);
3. **evaluate_candidate** (one mapped task per candidate, queue `FND_TRAIN_QUEUE`, as many at
   once as the executor allows): the recipe's estimate on the retraining's topic folds, and on
   each outer fold's inner folds. A candidate that fails is recorded with its reason; the
   search goes on;
4. **select**: the simplest candidate within one standard error of the best estimate wins
   (retraining's rule among kinds); its **honest** figure is nested (each outer fold makes the
   same choice on its inner folds, then scores its held-out topics with its pick), recorded in
   `fnd.sweeps` beside the winner's own (optimistic) figure;
5. **train_winner**: the winner's recipe trained like any candidate, the champion's recipe on
   the same folds; then **evaluate → gate → promote / reject** as `fnd_retrain`. The gate reads
   the nested figure; a recipe other than the champion's must beat the champion's recipe by
   `FND_GATE_NEW_RECIPE_MARGIN` (or the paired fold-wise standard error, if larger).

**Params**: `space` (a search space, as in `sweeps/default.yaml`), `budget` (candidates, at
most `FND_SWEEP_MAX_CANDIDATES`), `min_accuracy`, `force_promote` (audited, as in fnd_retrain).
Schedule: `FND_SWEEP_CRON` (unset: manual only).
"""

from __future__ import annotations

from airflow.sdk import Param, dag, get_current_context, task

from fnd_airflow.dag_support import COMMON_DAG_KWARGS, TRAIN_TIMEOUT, fnd_engine, fnd_settings
from fnd_airflow.gate_tasks import gate_candidate
from fnd_airflow.training_tasks import (
    claim_training_lease,
    gate_params,
    hold_training_lease,
    release_training_lease,
    snapshot_tasks,
)
from fnd_core import contracts

SETTINGS = fnd_settings()  # read once at parse time: the schedule, the form's bounds, the queue


def _default_space() -> dict:
    import yaml

    from fnd_core.resources import SWEEPS_DIR

    return yaml.safe_load((SWEEPS_DIR / "default.yaml").read_text(encoding="utf-8"))


@dag(
    dag_id=contracts.SWEEP_DAG,
    schedule=SETTINGS.sweep_cron,
    doc_md=__doc__,
    tags=["fnd", "training"],
    max_active_runs=1,
    params={
        "space": Param(
            _default_space(),
            type="object",
            title="Search space",
            description="version, method (grid | random), seed, parameters: see "
            "sweeps/default.yaml. Checked before anything runs.",
        ),
        "budget": Param(
            min(8, SETTINGS.sweep_max_candidates),
            type="integer",
            minimum=1,
            maximum=SETTINGS.sweep_max_candidates,
            title="Candidates",
            description="Most candidates (mapped tasks). At most FND_SWEEP_MAX_CANDIDATES.",
        ),
        **gate_params("the nested gate metric"),
    },
    **COMMON_DAG_KWARGS,
)
def fnd_sweep():
    @task(queue=SETTINGS.train_queue, execution_timeout=TRAIN_TIMEOUT)
    def start(snap: dict, _validated: dict) -> list[dict]:
        """Expand and record the candidates, one ``{sweep_id, candidate}`` each to map over; a
        bad space fails here, before any fitting."""
        from airflow.sdk.exceptions import AirflowFailException

        from fnd_core.pipeline import sweep
        from fnd_core.pipeline.sweep_space import load_space

        hold_training_lease()
        context = get_current_context()
        params = context["params"]
        try:
            space = load_space(params["space"])
            started = sweep.start(fnd_engine(), fnd_settings(), snap, space,
                                  budget=params["budget"], run_id=context["run_id"])  # fmt: skip
        except ValueError as exc:
            raise AirflowFailException(str(exc)) from exc
        return [{"sweep_id": started["sweep_id"], "candidate": i, "snap": snap}
                for i in started["candidates"]]  # fmt: skip

    @task(
        task_id=contracts.SWEEP_CANDIDATE_TASK,
        queue=SETTINGS.train_queue,
        execution_timeout=TRAIN_TIMEOUT,
        map_index_template="{{ candidate_label }}",
    )
    def evaluate_candidate(job: dict) -> dict:
        from fnd_core.pipeline import sweep

        hold_training_lease()
        context = get_current_context()
        context["candidate_label"] = f"candidate {job['candidate']}"  # type: ignore[typeddict-unknown-key]
        return sweep.evaluate_candidate(
            fnd_engine(), fnd_settings(), job["snap"], job["sweep_id"], job["candidate"]
        )

    # every candidate done, failed or not (a failed one is recorded and left out); nothing to
    # select when `start` itself failed (its upstreams are start and the candidates only)
    @task(trigger_rule="all_done_min_one_success")
    def select(jobs: list[dict], _done: list) -> dict:
        """The winner and its nested estimate, from every candidate that finished."""
        from fnd_core.pipeline import sweep

        job = jobs[0]
        return sweep.select(fnd_engine(), fnd_settings(), job["snap"], job["sweep_id"])

    @task(queue=SETTINGS.train_queue, execution_timeout=TRAIN_TIMEOUT)
    def train_winner(snap: dict, selection: dict) -> dict:
        from airflow.sdk.exceptions import AirflowFailException

        from fnd_core.pipeline import sweep

        hold_training_lease()
        try:
            return sweep.train_winner(fnd_engine(), fnd_settings(), snap, selection,
                                      run_id=get_current_context()["run_id"])  # fmt: skip
        except ValueError as exc:
            raise AirflowFailException(str(exc)) from exc

    lease = claim_training_lease()
    snap, validated = snapshot_tasks()
    lease >> snap
    jobs = start(snap, validated)
    done = evaluate_candidate.expand(job=jobs)
    selection = select(jobs, done)
    leaves = gate_candidate(train_winner(snap, selection), reason="new champion from fnd_sweep")
    release_training_lease(lease, leaves)


fnd_sweep()
