"""`fnd ingest` and `fnd demo generate`: posts into fnd, from a landing folder or made up.

One of the command modules of :mod:`fnd_core.stack.cli`, which registers them on the ``fnd``
group; split out so each area's commands read on their own.
"""

from __future__ import annotations

from pathlib import Path

import click

from fnd_core.stack.cli_context import engine_from, settings_from


@click.command("ingest")
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
    from fnd_core.ingest.readers import FileChangedError
    from fnd_core.ingest.run_outcome import summary_lines
    from fnd_core.io.storage import printable

    settings = settings_from(ctx)
    try:
        path = allowed_landing_path(path or settings.landing, settings, operator=True)
    except PathNotAllowedError as exc:
        raise click.ClickException(str(exc)) from exc
    engine = engine_from(ctx)
    files = list_new_files(path, settings)
    if not files:
        click.echo(f"no files waiting in {printable(path)}")
        return
    aside: dict[str, str] = {}
    totals = dict.fromkeys(("n_received", "n_accepted", "n_quarantined", "n_duplicate"), 0)
    for uri in files:
        try:
            report = ingest_file(engine, uri, settings, run_id="cli", fail_share=fail_share)
        except BatchRejectedError as exc:
            report = exc.report
            aside[report.uri] = report.reason or report.status
        except FileChangedError as exc:  # left in place for the next run
            click.echo(f"{printable(uri)}: {exc}")
            continue
        except Exception as exc:  # noqa: BLE001 — not the file's fault (the database): said
            aside[printable(uri)] = f"{type(exc).__name__}: {exc}"
            click.echo(f"{printable(uri)}: not ingested ({type(exc).__name__}: {exc})")
            continue
        click.echo(report.summary())
        for key in totals:
            totals[key] += getattr(report, key)
    click.echo(
        f"total: received {totals['n_received']} / accepted {totals['n_accepted']} / "
        f"quarantined {totals['n_quarantined']} / duplicates {totals['n_duplicate']}"
    )
    for line in summary_lines(aside):
        click.echo(line, err=True)
    if aside:
        ctx.exit(1)


@click.group("demo")
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
