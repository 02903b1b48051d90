"""`fnd train` and `fnd evaluate`: train, gate and register a model; measure one offline.

One of the command modules of :mod:`fnd_core.stack.cli`, which registers them on the ``fnd``
group; split out so each area's commands read on their own.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import click

from fnd_core.model.config import PRESETS
from fnd_core.stack.cli_context import engine_from, settings_from

F = TypeVar("F", bound=Callable[..., Any])


# Exit status of a training command refused because another run holds the training lease
# (EX_TEMPFAIL: try again later).
EXIT_LEASE_HELD = 75


class TrainingLeaseHeld(click.ClickException):
    """Printed as ``Error: …`` naming the holder; the process exits 75."""

    exit_code = EXIT_LEASE_HELD


def gate_options(figure: str) -> Callable[[F], F]:
    """``--min-accuracy`` and ``--force-promote``: the gate's audited overrides, one spelling
    for every command that gates a candidate."""

    def decorate(fn: F) -> F:
        fn = click.option(
            "--force-promote",
            "forced_by",
            default=None,
            metavar="WHO",
            help="Promote even if the gate says no; WHO is recorded for the audit.",
        )(fn)
        return click.option(
            "--min-accuracy",
            type=click.FloatRange(0, 1),
            default=None,
            help=f"Gate floor on {figure} (default: FND_GATE_MIN_ACCURACY); recorded as set "
            "by you.",
        )(fn)

    return decorate


@contextmanager
def refused_while_training() -> Iterator[None]:
    """Another retraining or sweep holds the lease: say who, exit 75, nothing trained."""
    from fnd_core.pipeline.training_lease import LeaseHeldError

    try:
        yield
    except LeaseHeldError as exc:
        raise TrainingLeaseHeld(str(exc)) from exc


@click.command("train")
@click.option(
    "--preset",
    type=click.Choice(PRESETS),
    default=None,
    help="Backbones (default: FND_MODEL_PRESET).",
)
@click.option(
    "--epochs", type=click.IntRange(min=1), default=None, help="Default: FND_TRAIN_EPOCHS (40)."
)
@click.option(
    "--ablation",
    type=click.Choice(["text", "image"]),
    default=None,
    help="Train on one modality only (for comparison; the gate still applies).",
)
@click.option(
    "--fusion",
    type=click.Choice(["concat", "interaction"]),
    default="concat",
    show_default=True,
    help="How the head combines image and text embeddings.",
)
@click.option("--seed", type=int, default=0, show_default=True)
@gate_options("the gate metric")
@click.option("--shuffle-labels", is_flag=True, help="Sanity check: train on shuffled labels.")
@click.option(
    "--snapshot",
    "snapshot_json",
    default=None,
    help="Train only the candidate of this snapshot (JSON from fnd_retrain) and register it; "
    "no gate. What a Vertex AI training job runs.",
)
@click.option("--run-id", default=None, help="With --snapshot: the Airflow run it belongs to.")
@click.option(
    "--result-uri",
    default=None,
    help="With --snapshot: write the candidate's summary (JSON) to this file in the store.",
)
@click.pass_context
def train_cmd(
    ctx: click.Context,
    preset: str | None,
    epochs: int | None,
    ablation: str | None,
    fusion: str,
    seed: int,
    min_accuracy: float | None,
    forced_by: str | None,
    shuffle_labels: bool,
    snapshot_json: str | None,
    run_id: str | None,
    result_uri: str | None,
) -> None:
    """Snapshot labelled posts, validate, cross-validate + train, gate, promote or reject."""
    import getpass

    from fnd_core.pipeline import retrain

    if snapshot_json is not None:
        from fnd_core.pipeline.remote_training import train_snapshot

        candidate = train_snapshot(
            engine_from(ctx), settings_from(ctx), snapshot_json, run_id=run_id or "cli",
            result_uri=result_uri, preset=preset, epochs=epochs or settings_from(ctx).train_epochs,
            seed=seed, ablation=ablation, fusion=fusion, shuffle_labels=shuffle_labels,
        )  # fmt: skip
        click.echo(json.dumps(candidate, sort_keys=True))
        return

    with refused_while_training():
        outcome = retrain.run(
            engine_from(ctx),
            settings_from(ctx),
            min_accuracy=min_accuracy,
            forced_by=forced_by,
            floor_set_by=getpass.getuser() if min_accuracy is not None else None,
            preset=preset,
            epochs=epochs or settings_from(ctx).train_epochs,
            seed=seed,
            ablation=ablation,
            fusion=fusion,
            shuffle_labels=shuffle_labels,
        )
    if "skipped" in outcome:
        click.echo(f"nothing trained: {outcome['skipped']}")
        return
    click.echo(_candidate_line(outcome["candidate"], outcome["evaluation"]))
    click.echo(f"gate: {outcome['decision']} — {outcome['reason']}")


def _candidate_line(candidate: dict, evaluation: dict) -> str:
    """One line: the candidate's cross-validated estimate next to the baselines' (same folds)."""
    from fnd_core.pipeline.evaluation import brief

    base = evaluation.get("baselines") or {}
    parts = [f"{name} {v['estimate']:.3f}" for name, v in sorted(base.items())]
    kinds = ((evaluation.get("selection") or {}).get("estimates")) or {}
    others = ", ".join(f"{k} {v:.3f}" for k, v in kinds.items())
    return (
        f"candidate {candidate['version']} ({evaluation.get('kind', 'fusion')}): "
        f"{evaluation['metric']} {brief(evaluation['candidate'])}"
        + (f"; every kind on the same folds: {others}" if others else "")
        + f"; baselines: {', '.join(parts)}"
    )


@click.command("sweep")
@click.option(
    "--space",
    "space_path",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="Search space file, YAML or JSON (default: sweeps/default.yaml).",
)
@click.option(
    "--budget",
    type=click.IntRange(min=1),
    default=8,
    show_default=True,
    help="Most candidates (at most FND_SWEEP_MAX_CANDIDATES).",
)
@gate_options("the nested gate metric")
@click.pass_context
def sweep_cmd(
    ctx: click.Context,
    space_path: str | None,
    budget: int,
    min_accuracy: float | None,
    forced_by: str | None,
) -> None:
    """Search recipes on the topic folds; gate the winner on its nested estimate."""
    import getpass

    from fnd_core.pipeline import sweep
    from fnd_core.pipeline.sweep_space import load_space

    try:
        space = load_space(space_path)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    engine = engine_from(ctx)
    with refused_while_training():
        outcome = sweep.run(
            engine, settings_from(ctx), space, budget=budget, min_accuracy=min_accuracy,
            forced_by=forced_by,
            floor_set_by=getpass.getuser() if min_accuracy is not None else None,
        )  # fmt: skip
    if "skipped" in outcome:
        click.echo(f"nothing trained: {outcome['skipped']}")
        return
    selection = outcome["sweep"]
    click.echo(f"sweep {selection['sweep_id']}: {selection['n_candidates']} candidates")
    for row in sweep.candidates_table(engine, selection["sweep_id"]):
        mark = "*" if row["candidate"] == selection["winner"] else " "
        figure = (
            f"{row['estimate']:.3f} ± {row['estimate_spread']:.3f}"
            if row["status"] == "done"
            else f"failed: {row['error']}"
        )
        click.echo(f"{mark} {row['candidate']:>3}  {figure:<16} {json.dumps(row['config'])}")
    nested = selection["nested"]
    click.echo(
        f"winner {selection['winner']}: its own estimate {selection['naive']:.3f}, nested "
        f"{nested['estimate']:.3f} [{nested['interval'][0]:.3f}, {nested['interval'][1]:.3f}]"
        f" (optimism {nested['optimism']:+.3f}): the gate reads the nested figure"
    )
    click.echo(f"candidate {outcome['candidate']['version']}")
    click.echo(f"gate: {outcome['decision']} — {outcome['reason']}")


@click.command("evaluate")
@click.argument("path", required=False)
@click.option(
    "--holdout-groups",
    "field",
    default=None,
    metavar="FIELD",
    help="Landing column naming each post's group (e.g. event): leave-one-group-out.",
)
@click.option(
    "--holdout-values",
    default=None,
    metavar="A,B",
    help="With --holdout-groups: hold out only these values, and print the gate's estimate.",
)
@click.option(
    "--time-holdout",
    type=float,
    default=None,
    metavar="SHARE",
    help="Hold out the newest SHARE of posts (created_utc) instead.",
)
@click.option(
    "--preset", type=click.Choice(PRESETS), default=None, help="Default: FND_MODEL_PRESET."
)
@click.option(
    "--epochs", type=click.IntRange(min=1), default=None, help="Default: FND_TRAIN_EPOCHS (40)."
)
@click.option(
    "--strip-topics",
    is_flag=True,
    help="Do not give training the topic/event fields: the gate discovers topics instead.",
)
@click.pass_context
def evaluate_cmd(
    ctx: click.Context,
    path: str | None,
    field: str | None,
    holdout_values: str | None,
    time_holdout: float | None,
    preset: str | None,
    epochs: int | None,
    strip_topics: bool,
) -> None:
    """Train on part of a labelled landing folder, test on groups it never saw (no database).

    Prints, per held-out group and pooled, the balanced accuracy of every candidate kind the
    gate chooses among and of the prior, trained on the same posts; with --holdout-values, the
    gate's topic-disjoint estimate of each beside it, and the kind it would ship.
    """
    from fnd_core.pipeline import holdout

    settings = settings_from(ctx)
    if (field is None) == (time_holdout is None):
        raise click.UsageError("give exactly one of --holdout-groups FIELD or --time-holdout SHARE")
    try:
        posts = holdout.read_labelled(path or settings.landing, settings, holdout_field=field)
        if time_holdout is not None:  # and field is None (exactly one is given)
            parts = holdout.newest_part(posts.created, time_holdout)
        elif holdout_values:
            parts = holdout.chosen_part(posts.holdout_values, holdout_values.split(","))
        else:
            parts = holdout.leave_one_out_parts(posts.holdout_values)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    if not parts:
        raise click.UsageError(f"no labelled post has a value in column {field!r}")
    click.echo(
        f"{len(posts.examples)} labelled posts ({posts.n_rejected} rows rejected by the row "
        f"checks{': ' + str(posts.rejected_rules) if posts.rejected_rules else ''})"
    )
    results = holdout.evaluate_holdouts(
        posts,
        settings,
        parts,
        preset=preset,
        epochs=epochs or settings.train_epochs,
        with_estimate=len(parts) == 1,
        strip_topics=strip_topics,
    )
    for line in holdout.report_lines(posts, results):
        click.echo(line)
