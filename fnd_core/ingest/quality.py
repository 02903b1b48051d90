"""Data validation with Great Expectations 1.x: JSON suites, one call per batch.

Suites live as GX 1.x ExpectationSuite JSON in ``expectations/`` (``posts``, ``training_set``).
Thresholds are GX suite parameters: an expectation kwarg ``{"$PARAMETER": "max_text_chars"}``
takes its default from the suite JSON's ``suite_parameters`` and can be overridden per run with
``validate_frame(parameters=...)``; an unknown name is a ``ValueError``, not a silent no-op.

Why GX is driven this way:
- ``great_expectations`` is imported inside functions (it takes seconds to import).
- Each call builds a fresh in-memory (ephemeral) context: nothing is written to a
  ``great_expectations.yml``, so concurrent tasks cannot corrupt a shared project file.
- With Data Docs on, validation results are kept as JSON under ``<data_docs_dir>/../gx/`` (the
  docs index is rebuilt from them: without them GX would prune older runs' pages) and HTML is
  built under ``data_docs_dir``; the build is serialised by a file lock, so runs accumulate
  (the newest ``docs_keep_runs``, default 500; the index page lists the latest 50).
- Analytics are off in the context config, progress bars are off, and GX's INFO logging is
  raised to WARNING only for the duration of a call. GX 1.24 ships no analytics client; the
  tests check that a validation opens no network connection.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse

if TYPE_CHECKING:
    import pandas as pd
    from sqlalchemy.engine import Connection

    from fnd_core.settings import Settings

logger = logging.getLogger(__name__)

_SITE_NAME = "fnd"
_DATASOURCE_NAME = "fnd"
# GX itself, and alembic's plugin set-up that logs at INFO while GX is first imported.
_CHATTY_LOGGERS = ("great_expectations", "alembic.runtime.plugins")
_MAX_PARTIAL_VALUES = 10  # partial unexpected values kept per expectation in a summary
_MAX_VALUE_CHARS = 80  # each kept value is cut to this many characters
# The docs index lists only the latest runs: building it loads every listed result (~5-10 ms
# each). Older pages stay on disk (reachable from fnd.validation_runs) until retention.
_INDEX_RUNS = 50
# Retention: each docs build lists every stored run (~1 ms a run), so history is bounded.
DEFAULT_DOCS_KEEP_RUNS = 500
_SLUG = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class ExpectationOutcome:
    """One expectation's verdict, reduced to what a task log, XCom or DB row needs."""

    expectation_type: str
    column: str | None
    kwargs: dict[str, Any]
    success: bool
    unexpected_count: int | None = None
    unexpected_percent: float | None = None
    partial_unexpected_values: tuple[Any, ...] = ()
    observed_value: Any = None
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "expectation_type": self.expectation_type,
            "column": self.column,
            "kwargs": dict(self.kwargs),
            "success": self.success,
            "unexpected_count": self.unexpected_count,
            "unexpected_percent": self.unexpected_percent,
            "partial_unexpected_values": list(self.partial_unexpected_values),
            "observed_value": self.observed_value,
            "error": self.error,
        }


@dataclass(frozen=True)
class ValidationSummary:
    """The outcome of validating one batch against one suite; small and JSON-able."""

    suite: str
    batch_name: str
    success: bool
    evaluated_rows: int
    statistics: dict[str, Any]
    results: tuple[ExpectationOutcome, ...]
    parameters: dict[str, Any] = field(default_factory=dict)
    data_docs_path: Path | str | None = None  # a local path, or the published URI
    gx_version: str = ""

    @property
    def failed(self) -> tuple[ExpectationOutcome, ...]:
        return tuple(r for r in self.results if not r.success)

    def to_json(self) -> dict[str, Any]:
        return {
            "suite": self.suite,
            "batch_name": self.batch_name,
            "success": self.success,
            "evaluated_rows": self.evaluated_rows,
            "statistics": dict(self.statistics),
            "parameters": dict(self.parameters),
            "results": [r.to_json() for r in self.results],
            "data_docs_path": str(self.data_docs_path) if self.data_docs_path else None,
            "gx_version": self.gx_version,
        }


# Suites ----------------------------------------------------------------------------------


def suite_path(expectations_dir: Path, suite_name: str) -> Path:
    """The JSON file of a suite; names are plain identifiers so they cannot escape the folder."""
    if not re.fullmatch(r"[A-Za-z0-9_]+", suite_name or ""):
        raise ValueError(f"suite name {suite_name!r} must be letters, digits or underscores")
    return Path(expectations_dir) / f"{suite_name}.json"


def load_suite_config(expectations_dir: Path, suite_name: str) -> dict[str, Any]:
    """Read a suite's JSON and check its shape, with errors that name the file.

    Returns the parsed dict (GX 1.x ExpectationSuite JSON). The expectation types and kwargs
    themselves are checked by GX when the suite is built (see :func:`build_suite`).
    """
    path = suite_path(expectations_dir, suite_name)
    if not path.is_file():
        known = sorted(p.stem for p in Path(expectations_dir).glob("*.json"))
        raise ValueError(f"no suite {suite_name!r}: {path} does not exist (known: {known})")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(config, dict) or config.get("name") != suite_name:
        raise ValueError(f"{path}: 'name' must be {suite_name!r}")
    expectations = config.get("expectations")
    if not isinstance(expectations, list) or not expectations:
        raise ValueError(f"{path}: 'expectations' must be a non-empty list")
    for i, exp in enumerate(expectations):
        if not isinstance(exp, dict) or not str(exp.get("type", "")).startswith("expect_"):
            raise ValueError(f"{path}: expectation #{i} needs a 'type' like 'expect_...'")
        if not isinstance(exp.get("kwargs", {}), dict):
            raise ValueError(f"{path}: expectation #{i} 'kwargs' must be an object")
    params = config.get("suite_parameters", {})
    if not isinstance(params, dict):
        raise ValueError(f"{path}: 'suite_parameters' must be an object")
    missing = _referenced_parameters(expectations) - params.keys()
    if missing:
        raise ValueError(f"{path}: $PARAMETER without a default in suite_parameters: {missing}")
    return config


def build_suite(config: Mapping[str, Any]) -> Any:
    """Build a GX ``ExpectationSuite`` from its JSON dict (GX validates types and kwargs)."""
    with _quiet_gx():  # the first GX import logs hundreds of INFO lines
        import great_expectations as gx

        return gx.ExpectationSuite(**dict(config))


def resolve_parameters(
    defaults: Mapping[str, Any], overrides: Mapping[str, Any] | None
) -> dict[str, Any]:
    """Suite defaults updated with run-time overrides; unknown names are a typo, so an error."""
    overrides = dict(overrides or {})
    unknown = sorted(overrides.keys() - defaults.keys())
    if unknown:
        raise ValueError(f"unknown suite parameter(s) {unknown}; known: {sorted(defaults)}")
    return {**defaults, **overrides}


def posts_parameters(settings: Settings) -> dict[str, Any]:
    """The ``posts`` suite parameters that come from settings, so callers need not know names."""
    return {
        "max_text_chars": settings.max_text_chars,
        "max_image_pixels": settings.max_image_pixels,
    }


def _referenced_parameters(node: Any) -> set[str]:
    if isinstance(node, dict):
        if set(node) == {"$PARAMETER"}:
            return {str(node["$PARAMETER"])}
        return set().union(*(_referenced_parameters(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(_referenced_parameters(v) for v in node))
    return set()


# Validation ------------------------------------------------------------------------------


def gx_dir_for(data_docs_dir: Path) -> Path:
    """Where validation results behind a docs site are kept: a ``gx/`` sibling of the site."""
    return Path(data_docs_dir).absolute().parent / "gx"


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
        from great_expectations.core.run_identifier import RunIdentifier

        context = _make_context(data_docs_dir)
        suite = context.suites.add(build_suite(config))
        if data_docs_dir is not None:
            _add_other_suites(context, Path(expectations_dir), suite_name)
        batch_definition = (
            context.data_sources.add_pandas(_DATASOURCE_NAME)
            .add_dataframe_asset(name=slug)
            .add_batch_definition_whole_dataframe("whole")
        )
        definition = context.validation_definitions.add(
            gx.ValidationDefinition(name=f"{suite_name}-{slug}", data=batch_definition, suite=suite)
        )
        checkpoint = context.checkpoints.add(
            gx.Checkpoint(
                name=f"{suite_name}-{slug}",
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
        docs_path = None
        if data_docs_dir is not None:
            docs_path = _build_docs(
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
        statistics=_json_safe(dict(result.statistics)),
        results=tuple(_outcome(r) for r in result.results),
        parameters=_json_safe(params),
        data_docs_path=docs_path,
        gx_version=gx.__version__,
    )


def publish_docs(docs_dir: Path, page: Path, suite_name: str, target: str) -> str:
    """Copy a run's page, its suite's page and the site index to ``target`` (same layout);
    returns the page's URI there. The index is this worker's view of the site: the plugin's
    Data quality page, read from the database, is the complete list of runs."""
    from fnd_core.io import storage

    docs_dir = docs_dir.absolute()
    for path in (page, docs_dir / "expectations" / f"{suite_name}.html", docs_dir / "index.html"):
        if path.is_file():
            relative = path.relative_to(docs_dir).as_posix()
            storage.write_bytes(storage.join(target, relative), path.read_bytes())
    return storage.join(target, page.relative_to(docs_dir).as_posix())


def record_validation(
    conn: Connection, validation: Mapping[str, Any], *, run_id: str, batch_id: int | None = None
) -> None:
    """Store a :meth:`ValidationSummary.to_json` in ``fnd.validation_runs`` (the Data quality
    page and ``fnd.daily_summary`` read it); ``batch_id`` when an ingest batch was checked."""
    import sqlalchemy as sa

    conn.execute(
        sa.text(
            "insert into fnd.validation_runs (suite, batch_id, batch_name, success, "
            "n_evaluated_rows, statistics, results, data_docs_uri, gx_version, run_id) values "
            "(:suite, :batch, :name, :ok, :n, cast(:stats as jsonb), cast(:results as jsonb), "
            ":docs, :gx, :run)"
        ),
        {
            "suite": validation["suite"],
            "batch": batch_id,
            "name": validation["batch_name"],
            "ok": validation["success"],
            "n": validation["evaluated_rows"],
            "stats": json.dumps(validation["statistics"]),
            "results": json.dumps(validation["results"]),
            "docs": validation["data_docs_path"],
            "gx": validation["gx_version"],
            "run": run_id,
        },
    )


def _make_context(data_docs_dir: Path | None) -> Any:
    """An in-memory GX context; with docs, results and the site are file-backed."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import DataContextConfig

    def memory(class_name: str) -> dict[str, Any]:
        return {"class_name": class_name, "store_backend": {"class_name": "InMemoryStoreBackend"}}

    results_store = memory("ValidationResultsStore")
    sites: dict[str, Any] = {}
    if data_docs_dir is not None:
        results_store["store_backend"] = {
            "class_name": "TupleFilesystemStoreBackend",
            "base_directory": str(gx_dir_for(data_docs_dir) / "validations"),
        }
        sites[_SITE_NAME] = {
            "class_name": "SiteBuilder",
            "show_how_to_buttons": False,
            "store_backend": {
                "class_name": "TupleFilesystemStoreBackend",
                "base_directory": str(Path(data_docs_dir).absolute()),
            },
            "site_index_builder": {
                "class_name": "DefaultSiteIndexBuilder",
                "validation_results_limit": _INDEX_RUNS,
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
        progress_bars={"globally": False, "metric_calculations": False},
        plugins_directory=None,
    )
    return gx.get_context(mode="ephemeral", project_config=config)


def _add_other_suites(context: Any, expectations_dir: Path, current: str) -> None:
    """Register every suite of the folder: the docs index drops pages of suites it cannot see."""
    for path in sorted(expectations_dir.glob("*.json")):
        if path.stem != current:
            try:
                context.suites.add(build_suite(load_suite_config(expectations_dir, path.stem)))
            except Exception as exc:  # a broken neighbour must not block this batch's check
                logger.warning("Data Docs: skipping suite %s: %s", path.name, exc)


def _build_docs(
    context: Any, data_docs_dir: Path, result_id: Any, suite_file: Path, *, keep_runs: int
) -> Path:
    """Render this run's page (and refresh the index) under a lock shared by all writers.

    Runs beyond ``keep_runs`` lose their stored result first; the index build then deletes
    their pages. The suite's own page is re-rendered only when missing or older than its
    JSON: rendering is mostly Jinja template compilation, and suites change far less often
    than batches land.
    """
    import fcntl  # POSIX only, like the deployments; kept out of module import

    from great_expectations.data_context.types.resource_identifiers import (
        ExpectationSuiteIdentifier,
    )

    gx_dir = gx_dir_for(data_docs_dir)
    gx_dir.mkdir(parents=True, exist_ok=True)
    suite_id = ExpectationSuiteIdentifier(name=suite_file.stem)
    suite_page = _page_path(context, suite_id)
    resources = [result_id]
    if not suite_page.is_file() or suite_page.stat().st_mtime < suite_file.stat().st_mtime:
        resources.append(suite_id)
    render_log = logging.getLogger("great_expectations.render.renderer.content_block.content_block")
    with open(gx_dir / "docs.lock", "w") as lock, _without(render_log, _unresolved_partition):
        # The index build deletes pages whose result it did not list: without the lock a
        # concurrent run could lose its page between the two listings.
        fcntl.flock(lock, fcntl.LOCK_EX)
        _prune_results(context.validation_results_store, keep_runs)
        context.build_data_docs(site_names=[_SITE_NAME], resource_identifiers=resources)
    return _page_path(context, result_id)


def _unresolved_partition(record: logging.LogRecord) -> bool:
    """GX 1.x's suite page draws a KL expectation's partition as given in the suite, and a
    ``$PARAMETER`` there (``model_outputs``: each champion has its own) makes it log a
    traceback and leave the chart out; the validation pages, with the value resolved, draw it."""
    return "_get_kl_divergence_chart" in record.getMessage()


@contextlib.contextmanager
def _without(log: logging.Logger, matches: Any) -> Iterator[None]:
    """Drop the records of ``log`` for which ``matches`` is true, for the duration."""

    def keep(record: logging.LogRecord) -> bool:
        return not matches(record)

    log.addFilter(keep)
    try:
        yield
    finally:
        log.removeFilter(keep)


def _prune_results(store: Any, keep: int) -> None:
    """Delete all but the ``keep`` newest stored validation results (empty folders go too)."""
    keys = sorted(store.list_keys(), key=lambda key: key.run_id.run_time, reverse=True)
    for key in keys[keep:]:
        store.remove_key(key)


def _page_path(context: Any, resource_id: Any) -> Path:
    """The local file of a resource's page on our site (whether built yet or not)."""
    (url,) = [
        site["site_url"]
        for site in context.get_docs_sites_urls(
            resource_identifier=resource_id, only_if_exists=False
        )
        if site["site_name"] == _SITE_NAME
    ]
    return Path(unquote(urlparse(url).path))


# Result shaping --------------------------------------------------------------------------


def _outcome(result: Any) -> ExpectationOutcome:
    config = result.expectation_config
    kwargs = {k: v for k, v in config.kwargs.items() if k not in {"column", "batch_id"}}
    details = result.result or {}
    error = _error_message(result.exception_info)
    partial = details.get("partial_unexpected_list") or []
    return ExpectationOutcome(
        expectation_type=config.type,
        column=config.kwargs.get("column"),
        kwargs=_json_safe(kwargs),
        success=bool(result.success),
        unexpected_count=_json_safe(details.get("unexpected_count")),
        unexpected_percent=_json_safe(details.get("unexpected_percent")),
        partial_unexpected_values=tuple(_json_safe(partial[:_MAX_PARTIAL_VALUES])),
        observed_value=_json_safe(details.get("observed_value")),
        error=error,
    )


def _error_message(exception_info: Any) -> str | None:
    """GX reports errors either flat or per metric id; keep the distinct messages."""
    if not exception_info:
        return None
    infos = [exception_info] if "raised_exception" in exception_info else exception_info.values()
    messages = [str(i.get("exception_message")) for i in infos if i.get("raised_exception")]
    return "; ".join(dict.fromkeys(messages)) or None


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


def _json_safe(value: Any) -> Any:
    """Plain JSON types only: NaN/NaT become None, long strings are cut, the rest is str()."""
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else value
    if isinstance(value, str):
        return value if len(value) <= _MAX_VALUE_CHARS else value[: _MAX_VALUE_CHARS - 1] + "…"
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_json_safe(v) for v in value]
    if hasattr(value, "to_json_dict"):  # GX objects such as row conditions
        return _json_safe(value.to_json_dict())
    if hasattr(value, "dict") and callable(value.dict):  # pydantic models
        return _json_safe(value.dict())
    try:
        if value != value:  # NaT and other NaN-likes that compare unequal to themselves
            return None
    except TypeError:  # pd.NA: its comparison result has no truth value
        return None
    if hasattr(value, "isoformat"):  # datetime, date, pd.Timestamp
        return value.isoformat()
    import numpy as np  # already loaded with pandas; only needed for numpy scalars

    if isinstance(value, np.datetime64):
        return str(value)
    if isinstance(value, np.generic):
        return _json_safe(value.item())
    return _json_safe(str(value))


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
