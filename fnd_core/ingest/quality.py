"""Data validation with Great Expectations 1.x: JSON suites, one call per batch.

:func:`validate_frame` runs one suite over one DataFrame and returns a small
:class:`ValidationSummary`. The pieces around the run have their own modules: suite JSON and
its parameters in :mod:`~fnd_core.ingest.suites`, the Data Docs site in
:mod:`~fnd_core.ingest.data_docs`, the summary and its ``fnd.validation_runs`` row in
:mod:`~fnd_core.ingest.validation_results`; their public names are importable from here too.

Why GX is driven this way:
- ``great_expectations`` is imported inside functions (it takes seconds to import).
- Each call builds a fresh in-memory (ephemeral) context: nothing is written to a
  ``great_expectations.yml``, so concurrent tasks cannot corrupt a shared project file.
- With Data Docs on, results and pages are files under ``data_docs_dir`` and a ``gx/`` sibling,
  built under a file lock (see :mod:`~fnd_core.ingest.data_docs`).
- Analytics are off in the context config, progress bars are off, and GX's INFO logging is
  raised to WARNING only for the duration of a call. GX 1.24 ships no analytics client; the
  tests check that a validation opens no network connection.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fnd_core.ingest.data_docs import (
    DEFAULT_DOCS_KEEP_RUNS,
    INDEX_RUNS,
    SITE_NAME,
    build_docs,
    gx_dir_for,
    publish_docs,
)
from fnd_core.ingest.suites import (
    load_suite_config,
    posts_parameters,
    resolve_parameters,
    suite_path,
)
from fnd_core.ingest.validation_results import (
    ExpectationOutcome,
    ValidationSummary,
    expectation_outcome,
    json_safe,
    record_validation,
)

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "DEFAULT_DOCS_KEEP_RUNS",
    "ExpectationOutcome",
    "ValidationSummary",
    "build_suite",
    "gx_dir_for",
    "load_suite_config",
    "posts_parameters",
    "publish_docs",
    "record_validation",
    "resolve_parameters",
    "suite_path",
    "validate_frame",
]

logger = logging.getLogger(__name__)

_DATASOURCE_NAME = "fnd"
# GX itself, and alembic's plugin set-up that logs at INFO while GX is first imported.
_CHATTY_LOGGERS = ("great_expectations", "alembic.runtime.plugins")
_SLUG = re.compile(r"[^A-Za-z0-9._-]+")


def build_suite(config: Mapping[str, Any]) -> Any:
    """Build a GX ``ExpectationSuite`` from its JSON dict (GX validates types and kwargs)."""
    with _quiet_gx():  # the first GX import logs hundreds of INFO lines
        import great_expectations as gx

        return gx.ExpectationSuite(**dict(config))


def validate_frame(
    df: pd.DataFrame,
    suite_name: str,
    *,
    expectations_dir: Path,
    data_docs_dir: Path | None,
    batch_name: str,
    parameters: dict[str, Any] | None = None,
    docs_keep_runs: int = DEFAULT_DOCS_KEEP_RUNS,
    publish_to: str | None = None,
) -> ValidationSummary:
    """Validate one DataFrame against a JSON suite; optionally add the run to Data Docs.

    Args:
        df: the batch, one row per record, with the columns the suite expects.
        suite_name: file stem in ``expectations_dir`` (``posts``, ``training_set``).
        expectations_dir: folder of suite JSON files.
        data_docs_dir: folder of the local Data Docs site, or None to skip docs (faster).
        batch_name: shown as run name and asset name in the docs (path-unsafe characters are
            replaced by ``_`` there); returned unchanged in the summary.
        parameters: overrides of the suite's ``suite_parameters`` for this run.
        docs_keep_runs: retention of the docs site: results and pages of older runs (all
            suites together) are deleted, since every docs build lists all stored runs.
        publish_to: a folder URI (``gs://bucket/prefix``) the run's page, its suite's page and
            the index are copied to after the build; ``data_docs_path`` is then the copy.

    Returns:
        A :class:`ValidationSummary`; ``data_docs_path`` is this run's HTML page when docs
        are on.
    """
    if not isinstance(batch_name, str) or not batch_name.strip():
        raise ValueError("batch_name must be a non-empty string")
    if docs_keep_runs < 1:
        raise ValueError(f"docs_keep_runs must be at least 1, got {docs_keep_runs}")
    config = load_suite_config(expectations_dir, suite_name)
    params = resolve_parameters(config.get("suite_parameters", {}), parameters)
    slug = _slug(batch_name)
    with _quiet_gx():
        import great_expectations as gx

        context = _make_context(data_docs_dir)
        suite = context.suites.add(build_suite(config))
        if data_docs_dir is not None:
            _add_other_suites(context, Path(expectations_dir), suite_name)
        result_id, result = _run_checkpoint(
            context, suite, f"{suite_name}-{slug}", slug, df, params
        )
        docs_path: Path | str | None = None  # a local page, or the published URI
        if data_docs_dir is not None:
            docs_path = build_docs(
                context,
                Path(data_docs_dir),
                result_id,
                suite_path(expectations_dir, suite_name),
                keep_runs=docs_keep_runs,
            )
            if publish_to:
                docs_path = publish_docs(Path(data_docs_dir), docs_path, suite_name, publish_to)

    return ValidationSummary(
        suite=suite_name,
        batch_name=batch_name,
        success=bool(result.success),
        evaluated_rows=len(df),
        statistics=json_safe(dict(result.statistics)),
        results=tuple(expectation_outcome(r) for r in result.results),
        parameters=json_safe(params),
        data_docs_path=docs_path,
        gx_version=gx.__version__,
    )


def _run_checkpoint(
    context: Any, suite: Any, name: str, slug: str, df: pd.DataFrame, params: dict[str, Any]
) -> tuple[Any, Any]:
    """One checkpoint over the whole DataFrame; its (result id, validation result)."""
    import great_expectations as gx
    from great_expectations.core.run_identifier import RunIdentifier

    batch_definition = (
        context.data_sources.add_pandas(_DATASOURCE_NAME)
        .add_dataframe_asset(name=slug)
        .add_batch_definition_whole_dataframe("whole")
    )
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(name=name, data=batch_definition, suite=suite)
    )
    checkpoint = context.checkpoints.add(
        gx.Checkpoint(
            name=name,
            validation_definitions=[definition],
            result_format={"result_format": "SUMMARY", "partial_unexpected_count": 20},
        )
    )
    run = checkpoint.run(
        batch_parameters={"dataframe": _naive_utc(df)},
        expectation_parameters=params,
        run_id=RunIdentifier(run_name=slug),
    )
    ((result_id, result),) = run.run_results.items()
    return result_id, result


def _make_context(data_docs_dir: Path | None) -> Any:
    """An in-memory GX context; with docs, results and the site are file-backed."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import DataContextConfig, ProgressBarsConfig

    def memory(class_name: str) -> dict[str, Any]:
        return {"class_name": class_name, "store_backend": {"class_name": "InMemoryStoreBackend"}}

    results_store = memory("ValidationResultsStore")
    sites: dict[str, Any] = {}
    if data_docs_dir is not None:
        results_store["store_backend"] = {
            "class_name": "TupleFilesystemStoreBackend",
            "base_directory": str(gx_dir_for(data_docs_dir) / "validations"),
        }
        sites[SITE_NAME] = {
            "class_name": "SiteBuilder",
            "show_how_to_buttons": False,
            "store_backend": {
                "class_name": "TupleFilesystemStoreBackend",
                "base_directory": str(Path(data_docs_dir).absolute()),
            },
            "site_index_builder": {
                "class_name": "DefaultSiteIndexBuilder",
                "validation_results_limit": INDEX_RUNS,
                "view": _view("CachedJinjaIndexPageView"),
            },
            # GX's sections, their views compiling templates once (fnd_core.ingest.docs_views)
            "site_section_builders": {
                section: {"view": _view("CachedJinjaPageView")}
                for section in ("expectations", "validations", "profiling")
            },
        }
    config = DataContextConfig(
        config_version=4.0,
        expectations_store_name="expectations_store",
        validation_results_store_name="validation_results_store",
        checkpoint_store_name="checkpoint_store",
        stores={
            "expectations_store": memory("ExpectationsStore"),
            "validation_results_store": results_store,
            "checkpoint_store": memory("CheckpointStore"),
            "validation_definition_store": memory("ValidationDefinitionStore"),
        },
        data_docs_sites=sites,
        analytics_enabled=False,
        progress_bars=ProgressBarsConfig(globally=False, metric_calculations=False),
        plugins_directory=None,
    )
    return gx.get_context(mode="ephemeral", project_config=config)


def _view(class_name: str) -> dict[str, str]:
    return {"module_name": "fnd_core.ingest.docs_views", "class_name": class_name}


def _add_other_suites(context: Any, expectations_dir: Path, current: str) -> None:
    """Register every suite of the folder: the docs index drops pages of suites it cannot see."""
    for path in sorted(expectations_dir.glob("*.json")):
        if path.stem != current:
            try:
                context.suites.add(build_suite(load_suite_config(expectations_dir, path.stem)))
            except Exception as exc:  # a broken neighbour must not block this batch's check
                logger.warning("Data Docs: skipping suite %s: %s", path.name, exc)


def _naive_utc(df: pd.DataFrame) -> pd.DataFrame:
    """Timezone-aware datetime columns as naive UTC (a shallow copy; the input is untouched).

    Suites hold ISO bounds such as ``min_created_at``; pandas refuses to compare an aware
    column with a naive bound, so one convention (naive UTC) serves both kinds of frames.
    """
    import pandas as pd

    aware = [c for c in df.columns if isinstance(df[c].dtype, pd.DatetimeTZDtype)]
    if not aware:
        return df
    out = df.copy(deep=False)
    for column in aware:
        out[column] = df[column].dt.tz_convert("UTC").dt.tz_localize(None)
    return out


def _slug(batch_name: str) -> str:
    """A path-safe form of the batch name: GX uses it in file paths of results and pages."""
    slug = _SLUG.sub("_", batch_name).strip("._")[:120]
    if not slug:
        raise ValueError(f"batch_name {batch_name!r} has no letters or digits")
    return slug


@contextlib.contextmanager
def _quiet_gx() -> Iterator[None]:
    """Raise GX's (and its import-time) loggers to WARNING for one call, then restore them."""
    loggers = [logging.getLogger(name) for name in _CHATTY_LOGGERS]
    previous = [lg.level for lg in loggers]
    for lg in loggers:
        if lg.getEffectiveLevel() < logging.WARNING:
            lg.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for lg, level in zip(loggers, previous, strict=True):
            lg.setLevel(level)
