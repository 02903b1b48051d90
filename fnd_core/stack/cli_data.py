"""`fnd ingest`, `fnd label` and `fnd demo generate`: posts and labels into fnd.

One of the command modules of :mod:`fnd_core.stack.cli`, which registers them on the ``fnd``
group; split out so each area's commands read on their own.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from fnd_core.stack.cli_context import engine_from, settings_from

if TYPE_CHECKING:
    from fnd_core.settings import Settings


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

    A folder's label files (in its labels/ folder) are ingested after its post files.
    Ingested files are moved to archive/ or failed/ beside them, so PATH may not be in fnd's
    own store, Data Docs, feature cache or database folder.
    """
    from fnd_core.ingest.load import waiting_files

    settings = settings_from(ctx)
    path = _operator_path(path or settings.landing, settings)
    _ingest_files(ctx, waiting_files(path, settings), None, fail_share, path)


@click.command("label")
@click.argument("path")
@click.option(
    "--fail-share",
    type=click.FloatRange(0, 1),
    default=None,
    help="Quarantined share above which a file fails (default: the setting).",
)
@click.pass_context
def label_cmd(ctx: click.Context, path: str, fail_share: float | None) -> None:
    """Load fact-checkers' labels from PATH (a CSV or JSONL file, or a folder of them).

    Columns: post_id, label (0/1, real/fake), optional source and labelled_at. Labels are
    appended to fnd.labels; posts.label becomes the latest from the most trusted source
    (FND_LABEL_TRUST_ORDER); a label for a post not ingested yet waits for it. Files move to
    archive/ or failed/ beside them. Then the champion's realized performance is checked.
    """
    from fnd_core.ingest.load import list_new_files
    from fnd_core.observe.performance import check_realized

    settings = settings_from(ctx)
    path = _operator_path(path, settings)
    _ingest_files(ctx, list_new_files(path, settings), "labels", fail_share, path)
    for alert in check_realized(engine_from(ctx), settings):
        click.echo(f"ALERT {alert.title}: " + "; ".join(alert.lines), err=True)


def _operator_path(path: str, settings: Settings) -> str:
    from fnd_core.ingest.load import PathNotAllowedError, allowed_landing_path

    try:
        return allowed_landing_path(path, settings, operator=True)
    except PathNotAllowedError as exc:
        raise click.ClickException(str(exc)) from exc


def _ingest_files(
    ctx: click.Context, files: list[str], kind: str | None, fail_share: float | None, path: str
) -> None:
    """Ingest each file, print its report and the totals; exit 1 when any was set aside."""
    from fnd_core.ingest.load import BatchRejectedError, ingest_file
    from fnd_core.ingest.readers import FileChangedError
    from fnd_core.ingest.run_outcome import summary_lines
    from fnd_core.io.storage import printable

    if not files:
        click.echo(f"no files waiting in {printable(path)}")
        return
    settings, engine = settings_from(ctx), engine_from(ctx)
    aside: dict[str, str] = {}
    totals = dict.fromkeys(("n_received", "n_accepted", "n_quarantined", "n_duplicate"), 0)
    for uri in files:
        try:
            report = ingest_file(engine, uri, settings, run_id="cli", fail_share=fail_share,
                                 kind=kind)  # fmt: skip
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
