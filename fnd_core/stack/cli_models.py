"""`fnd model ...` and `fnd score`: the registry's versions, audited changes, and scoring.

One of the command modules of :mod:`fnd_core.stack.cli`, which registers them on the ``fnd``
group; split out so each area's commands read on their own.
"""

from __future__ import annotations

import time

import click

from fnd_core.stack.cli_context import engine_from, settings_from


@click.group("model")
def model_group() -> None:
    """The model registry: list versions, retire the champion, roll back (audited)."""


@model_group.command("list")
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True)
@click.pass_context
def model_list(ctx: click.Context, limit: int) -> None:
    """Versions, newest first: status, gate metric and estimate, decision."""
    import sqlalchemy as sa

    with engine_from(ctx).connect() as conn:
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
        registry.retire(engine_from(ctx), version, by=getpass.getuser(), reason=reason)
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

    engine = engine_from(ctx)
    try:
        target = registry.get_version(engine, version)
        load_model(*target.artifact())
        before = registry.rollback(engine, version, by=getpass.getuser(), reason=reason)
    except Exception as exc:  # noqa: BLE001 — unknown version, wrong status, unloadable artifact
        raise click.ClickException(f"cannot roll back to {version}: {exc}") from exc
    click.echo(f"{version} is the champion again (was: {before or 'none'}); run `fnd score`")


@click.command("score")
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
    "--objective",
    type=click.Choice(["balanced", "accuracy"]),
    default=None,
    help="Verdicts' decision objective (default: FND_DECISION_OBJECTIVE): accuracy moves the "
    "threshold by the fake share estimated on the posts scored.",
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
    objective: str | None,
    page_size: int,
) -> None:
    """Score the posts the champion (or --model-version) has not scored yet."""
    from dataclasses import replace

    from fnd_core.io.db import database_url, make_engine
    from fnd_core.pipeline import scoring

    settings = settings_from(ctx)
    if workers:
        settings = replace(settings, score_workers=workers)
    if objective:
        settings = replace(settings, decision_objective=objective)
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
            + (f", estimated fake share {report.estimated_fake_share:.1%}, threshold "
               f"{report.threshold:.3f}" if report.estimated_fake_share is not None else "")
        )  # fmt: skip
    n_scored = sum(r.n_scored for r in reports)
    seconds = time.perf_counter() - started
    click.echo(f"scored {n_scored} post(s) in {seconds:.1f} s ({n_scored / seconds:.1f} posts/s)")
    from fnd_core.observe.performance import estimate_weeks

    engine = make_engine(url)
    estimate_weeks(engine, model_version=work["model_version"])  # the label-free estimate
    engine.dispose()


@click.command("performance")
@click.option("--model-version", default=None, help="One version (default: every version).")
@click.option("--json", "as_json", is_flag=True, help="Rows as JSON lines.")
@click.pass_context
def performance_cmd(ctx: click.Context, model_version: str | None, as_json: bool) -> None:
    """Realized performance (verdicts vs the labels that came after them) beside the
    label-free estimate, per model version and UTC week of the first verdicts."""
    import json

    from fnd_core.observe.performance import estimate_weeks, realized

    engine = engine_from(ctx)
    estimate_weeks(engine, model_version=model_version)
    rows = realized(engine, model_version=model_version)
    if as_json:
        for row in rows:
            click.echo(json.dumps(row))
        return
    if not rows:
        click.echo("no verdicts yet")
        return
    click.echo(f"{'version':<28} {'week':<10} {'verdicts':>8} {'labelled':>8} {'hindsight':>9} "
               f"{'realized BA':>11} {'estimated BA':>12} {'gate (posts)':>12}")  # fmt: skip
    for r in rows:
        click.echo(
            f"{r['model_version']:<28} {r['week']:<10} {r['n_verdicts']:>8} {r['n_labelled']:>8} "
            f"{r['n_hindsight']:>9} {_shown(r['balanced_accuracy']):>11} "
            f"{_shown(r['estimated_balanced_accuracy']):>12} "
            f"{_shown(r['gate_estimate_by_post']):>12}"
        )


def _shown(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"
