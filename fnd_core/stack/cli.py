"""The ``fnd`` command line: a thin layer over fnd_core's functions.

Each command imports what it needs inside its body, so ``fnd --help`` and ``fnd config``
start instantly and only ``fnd train`` pays for torch.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path

import click

from fnd_core.model.config import PRESETS
from fnd_core.settings import Settings


def _settings(ctx: click.Context) -> Settings:
    obj = ctx.ensure_object(dict)
    if "settings" not in obj:
        from fnd_core.io import gcp

        obj["settings"] = Settings.from_env()
        # gs:// access from the CLI: Application Default Credentials (fnd_core.io.gcp)
        gcp.configure(endpoint=obj["settings"].gcs_endpoint)
    return obj["settings"]


def _engine(ctx: click.Context):
    from fnd_core.io.db import engine_from_settings

    return engine_from_settings(_settings(ctx))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
@click.pass_context
def cli(ctx: click.Context, verbose: bool) -> None:
    """fnd: batch fake-news scoring of image+text posts (settings from FND_* variables)."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    ctx.ensure_object(dict)


@cli.command("config")
@click.pass_context
def config_cmd(ctx: click.Context) -> None:
    """Print the effective settings (secrets masked)."""
    rows = _settings(ctx).describe()
    width = max(len(name) for name, _, _ in rows)
    for name, value, doc in rows:
        click.echo(f"{name:<{width}}  {value}")
        click.echo(f"{'':<{width}}    {doc}")


@cli.group("db")
def db_group() -> None:
    """fnd's Postgres: migrations and connection."""


@db_group.command("upgrade")
@click.pass_context
def db_upgrade(ctx: click.Context) -> None:
    """Apply pending sql/ migrations, each in its own transaction."""
    from fnd_core.io import migrations

    applied = migrations.upgrade(_engine(ctx))
    if applied:
        for name in applied:
            click.echo(f"applied  {name}")
    else:
        click.echo("database is up to date: nothing to apply")


@db_group.command("status")
@click.pass_context
def db_status(ctx: click.Context) -> None:
    """List migrations: applied, pending, or modified since applied."""
    from fnd_core.io import migrations

    for state in migrations.status(_engine(ctx)):
        click.echo(f"{state.status:<9} {state.filename}  {state.applied_at or ''}".rstrip())


@db_group.command("url")
@click.pass_context
def db_url(ctx: click.Context) -> None:
    """Print the database URL (starts the embedded server if that is the one in use)."""
    from fnd_core.io.db import database_url

    click.echo(database_url(_settings(ctx)))


@db_group.command("psql")
@click.pass_context
def db_psql(ctx: click.Context) -> None:
    """Print a psql command connected to fnd's database."""
    from fnd_core.io.db import database_url, psql_command

    click.echo(psql_command(database_url(_settings(ctx))))


@db_group.command("stop")
@click.pass_context
def db_stop(ctx: click.Context) -> None:
    """Stop the embedded PostgreSQL (data kept under FND_HOME); no-op for an external one."""
    from fnd_core.stack.processes import stop_embedded

    settings = _settings(ctx)
    if settings.database_url:
        click.echo("FND_DATABASE_URL is set: fnd does not manage that server")
    elif stop_embedded(settings):
        click.echo(f"stopped the embedded PostgreSQL in {settings.embedded_pgdata}")
    else:
        click.echo("the embedded PostgreSQL is not running")


@cli.command("ingest")
@click.argument("path", required=False)
@click.option(
    "--fail-share",
    type=click.FloatRange(0, 1),
    default=None,
    help="Quarantined share above which a file fails (default: the setting).",
)
@click.pass_context
def ingest_cmd(ctx: click.Context, path: str | None, fail_share: float | None) -> None:
    """Ingest PATH (a file or folder, local or gs://; default: the landing zone).

    Ingested files are moved to archive/ or failed/ beside them, so PATH may not be in fnd's
    own store, Data Docs, feature cache or database folder.
    """
    from fnd_core.ingest.load import (
        BatchRejectedError,
        PathNotAllowedError,
        allowed_landing_path,
        ingest_file,
        list_new_files,
    )

    settings = _settings(ctx)
    try:
        path = allowed_landing_path(path or settings.landing, settings, operator=True)
    except PathNotAllowedError as exc:
        raise click.ClickException(str(exc)) from exc
    engine = _engine(ctx)
    files = list_new_files(path, settings)
    if not files:
        click.echo(f"no files waiting in {path}")
        return
    failed = 0
    totals = dict.fromkeys(("n_received", "n_accepted", "n_quarantined", "n_duplicate"), 0)
    for uri in files:
        try:
            report = ingest_file(engine, uri, settings, run_id="cli", fail_share=fail_share)
        except BatchRejectedError as exc:
            report, failed = exc.report, failed + 1
        click.echo(report.summary())
        for key in totals:
            totals[key] += getattr(report, key)
    click.echo(
        f"total: received {totals['n_received']} / accepted {totals['n_accepted']} / "
        f"quarantined {totals['n_quarantined']} / duplicates {totals['n_duplicate']}"
        + (f"; {failed} file(s) failed (see failed/)" if failed else "")
    )
    if failed:
        ctx.exit(1)


@cli.command("train")
@click.option(
    "--preset",
    type=click.Choice(PRESETS),
    default=None,
    help="Backbones (default: FND_MODEL_PRESET).",
)
@click.option("--epochs", type=click.IntRange(min=1), default=None, help="Default: 40.")
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
@click.option(
    "--min-accuracy",
    type=click.FloatRange(0, 1),
    default=None,
    help="Gate floor on the gate metric (default: FND_GATE_MIN_ACCURACY); recorded as set by you.",
)
@click.option(
    "--force-promote",
    "forced_by",
    default=None,
    metavar="WHO",
    help="Promote even if the gate says no; WHO is recorded for the audit.",
)
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
    preset,
    epochs,
    ablation,
    fusion,
    seed,
    min_accuracy,
    forced_by,
    shuffle_labels,
    snapshot_json,
    run_id,
    result_uri,
) -> None:
    """Snapshot labelled posts, validate, cross-validate + train, gate, promote or reject."""
    import getpass

    from fnd_core.pipeline import retrain

    if snapshot_json is not None:
        from fnd_core.pipeline.remote_training import train_snapshot

        candidate = train_snapshot(
            _engine(ctx), _settings(ctx), snapshot_json, run_id=run_id or "cli",
            result_uri=result_uri, preset=preset, epochs=epochs or retrain.DEFAULT_EPOCHS,
            seed=seed, ablation=ablation, fusion=fusion, shuffle_labels=shuffle_labels,
        )  # fmt: skip
        click.echo(json.dumps(candidate, sort_keys=True))
        return

    outcome = retrain.run(
        _engine(ctx),
        _settings(ctx),
        min_accuracy=min_accuracy,
        forced_by=forced_by,
        floor_set_by=getpass.getuser() if min_accuracy is not None else None,
        preset=preset,
        epochs=epochs or retrain.DEFAULT_EPOCHS,
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
    return (
        f"candidate {candidate['version']}: {evaluation['metric']} "
        f"{brief(evaluation['candidate'])}; baselines on the same folds: {', '.join(parts)}"
    )


@cli.group("model")
def model_group() -> None:
    """The model registry: list versions, retire the champion, roll back (audited)."""


@model_group.command("list")
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True)
@click.pass_context
def model_list(ctx: click.Context, limit: int) -> None:
    """Versions, newest first: status, gate metric and estimate, decision."""
    import sqlalchemy as sa

    with _engine(ctx).connect() as conn:
        rows = conn.execute(
            sa.text(
                "select version, status, gate_metric, gate_estimate, gate_decision, forced_by "
                "from fnd.model_leaderboard limit :n"
            ),
            {"n": limit},
        ).all()
    if not rows:
        click.echo("no model versions yet: run `fnd train`")
    for version, status, metric, estimate, decision, forced_by in rows:
        shown = "n/a" if estimate is None else f"{float(estimate):.3f}"
        forced = f" (forced by {forced_by})" if forced_by else ""
        click.echo(
            f"{version}  {status:<9}  {metric or 'accuracy'} {shown}  {decision or '-'}{forced}"
        )


@model_group.command("retire")
@click.argument("version")
@click.option("--reason", required=True, help="Why, for the audit trail.")
@click.pass_context
def model_retire(ctx: click.Context, version: str, reason: str) -> None:
    """Take the champion VERSION out of service (audited with your user name)."""
    import getpass

    from fnd_core.pipeline import registry

    try:
        registry.retire(_engine(ctx), version, by=getpass.getuser(), reason=reason)
    except (LookupError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"{version} retired: there is no champion until a promotion or a rollback")


@model_group.command("rollback")
@click.argument("version")
@click.option("--reason", required=True, help="Why, for the audit trail.")
@click.pass_context
def model_rollback(ctx: click.Context, version: str, reason: str) -> None:
    """Make the former champion VERSION the champion again, once its artifact verifies."""
    import getpass

    from fnd_core.model.artifacts import load_model
    from fnd_core.pipeline import registry

    engine = _engine(ctx)
    try:
        target = registry.get_version(engine, version)
        load_model(target.artifact_uri, target.artifact_sha256)
        before = registry.rollback(engine, version, by=getpass.getuser(), reason=reason)
    except Exception as exc:  # noqa: BLE001 — unknown version, wrong status, unloadable artifact
        raise click.ClickException(f"cannot roll back to {version}: {exc}") from exc
    click.echo(f"{version} is the champion again (was: {before or 'none'}); run `fnd score`")


@cli.command("evaluate")
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
@click.option("--epochs", type=click.IntRange(min=1), default=None, help="Default: 40.")
@click.pass_context
def evaluate_cmd(ctx, path, field, holdout_values, time_holdout, preset, epochs) -> None:
    """Train on part of a labelled landing folder, test on groups it never saw (no database).

    Prints, per held-out group and pooled, fnd's balanced accuracy next to the gate's two
    baselines trained on the same posts.
    """
    from fnd_core.pipeline import holdout, retrain

    settings = _settings(ctx)
    if (field is None) == (time_holdout is None):
        raise click.UsageError("give exactly one of --holdout-groups FIELD or --time-holdout SHARE")
    try:
        posts = holdout.read_labelled(path or settings.landing, settings, holdout_field=field)
        if field is None:
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
        epochs=epochs or retrain.DEFAULT_EPOCHS,
        with_estimate=len(parts) == 1,
    )
    for line in holdout.report_lines(posts, results):
        click.echo(line)


@cli.command("score")
@click.option("--rescore-all", is_flag=True, help="Score every post again (overwrites).")
@click.option("--model-version", default=None, help="Score with this version (default: champion).")
@click.option(
    "--shards",
    type=click.IntRange(min=1),
    default=None,
    help="Split the work this many ways (default: one shard per worker).",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=None,
    help="Shards scored at once, in worker processes on CPU (default: FND_SCORE_WORKERS).",
)
@click.option(
    "--page-size",
    type=click.IntRange(min=1),
    default=2048,
    show_default=True,
    help="Posts read, scored and committed together.",
)
@click.pass_context
def score_cmd(
    ctx: click.Context,
    rescore_all: bool,
    model_version: str | None,
    shards: int | None,
    workers: int | None,
    page_size: int,
) -> None:
    """Score the posts the champion (or --model-version) has not scored yet."""
    from dataclasses import replace

    from fnd_core.io.db import database_url, make_engine
    from fnd_core.pipeline import scoring

    settings = _settings(ctx)
    if workers:
        settings = replace(settings, score_workers=workers)
    url = database_url(settings)
    engine = make_engine(url)
    n_shards = shards or settings.score_workers  # in one process, more shards only add overhead
    work = scoring.plan(
        engine, model_version=model_version, n_shards=n_shards, rescore_all=rescore_all
    )
    engine.dispose()
    if not work["n_todo"]:
        click.echo(f"nothing to score: every post has a verdict from {work['model_version']}")
        return
    started = time.perf_counter()
    reports = scoring.score_shards(
        url, settings, work, rescore_all=rescore_all, run_id="cli", page_size=page_size
    )
    for report in reports:
        click.echo(
            f"shard {report.shard}/{n_shards}: scored {report.n_scored}, errors {report.n_errors} "
            f"({report.posts_per_s:.1f} posts/s)"
        )
    n_scored = sum(r.n_scored for r in reports)
    seconds = time.perf_counter() - started
    click.echo(f"scored {n_scored} post(s) in {seconds:.1f} s ({n_scored / seconds:.1f} posts/s)")


@cli.group("demo")
def demo_group() -> None:
    """Synthetic 'semantic conflict' posts for demos, tests and benchmarks."""


@demo_group.command("generate")
@click.option("--posts", "n_posts", type=click.IntRange(min=1), default=200, show_default=True)
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), required=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["jsonl", "csv", "fakeddit"]),
    default="jsonl",
    show_default=True,
)
@click.option("--unlabelled-share", type=click.FloatRange(0, 1), default=0.0, show_default=True)
@click.option("--fake-share", type=click.FloatRange(0, 1), default=0.5, show_default=True)
@click.option("--label-noise", type=click.FloatRange(0, 1), default=0.0, show_default=True)
def demo_generate(
    n_posts: int,
    out_dir: Path,
    seed: int,
    fmt: str,
    unlabelled_share: float,
    fake_share: float,
    label_noise: float,
) -> None:
    """Write a labelled landing batch: a data file plus images/ in OUT."""
    from fnd_core.stack.demo import generate_batch

    batch = generate_batch(
        out_dir,
        n_posts,
        seed=seed,
        fmt=fmt,
        unlabelled_share=unlabelled_share,
        fake_share=fake_share,
        label_noise=label_noise,
    )
    click.echo(
        f"wrote {batch.n_posts} posts to {batch.data_file} "
        f"(fake {batch.n_fake}, real {batch.n_real}, unlabelled {batch.n_unlabelled})"
    )


@cli.command("up")
@click.option(
    "--port",
    type=click.IntRange(1, 65535),
    default=8080,
    envvar="FND_AIRFLOW_PORT",
    show_default=True,
    show_envvar=True,
    help="Port of the Airflow UI / API server.",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address the UI binds to.")
@click.option(
    "--demo-posts",
    type=click.IntRange(min=0),
    default=1500,
    show_default=True,
    help="Demo batch landed on a first run (no posts, empty landing zone); 0: none.",
)
@click.option("--demo-seed", type=int, default=7, show_default=True)
@click.option(
    "--kickoff/--no-kickoff",
    default=True,
    show_default=True,
    help="Trigger fnd_ingest now, then fnd_retrain if there is no champion yet.",
)
@click.option(
    "--airflow-db-url",
    default=None,
    help="Airflow metadata database (default: AIRFLOW__DATABASE__SQL_ALCHEMY_CONN, else a "
    "database 'airflow' on fnd's server).",
)
@click.option(
    "--executor",
    type=click.Choice(["local", "celery"]),
    default="local",
    envvar="FND_EXECUTOR",
    show_default=True,
    show_envvar=True,
    help="Airflow executor: LocalExecutor, or CeleryExecutor with workers on this machine "
    "(broker FND_CELERY_BROKER_URL).",
)
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=2,
    show_default=True,
    help="Celery workers on the default queue (--executor celery).",
)
@click.option(
    "--train-workers",
    type=click.IntRange(0, 16),
    default=1,
    show_default=True,
    help="Celery workers serving only FND_TRAIN_QUEUE, when it is not 'default'.",
)
@click.pass_context
def up_cmd(
    ctx: click.Context,
    port: int,
    host: str,
    demo_posts: int,
    demo_seed: int,
    kickoff: bool,
    airflow_db_url: str | None,
    executor: str,
    workers: int,
    train_workers: int,
) -> None:
    """Run fnd in Airflow 3 until Ctrl-C: Postgres, scheduler, DAG processor, triggerer, UI
    (and Celery workers with ``--executor celery``)."""
    from fnd_core.stack.local import StackOptions, run_stack

    options = StackOptions(
        port=port,
        host=host,
        demo_posts=demo_posts,
        demo_seed=demo_seed,
        kickoff=kickoff,
        airflow_db_url=airflow_db_url,
        executor=executor,
        workers=workers,
        train_workers=train_workers,
    )
    logging.getLogger().setLevel(logging.WARNING)  # the stack prints its own progress
    try:
        code = run_stack(_settings(ctx), options, echo=click.echo)
    except (ValueError, RuntimeError) as exc:
        raise click.ClickException(str(exc)) from exc
    ctx.exit(code)


def main() -> None:
    """Console-script entry point."""
    cli(obj={})


if __name__ == "__main__":
    main()
