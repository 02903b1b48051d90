"""The Data Docs site: build a run's HTML page under a lock, keep history bounded, publish it.

With Data Docs on, validation results are kept as JSON under ``<data_docs_dir>/../gx/`` (the
docs index is rebuilt from them: without them GX would prune older runs' pages) and HTML is
built under ``data_docs_dir``; the build is serialised by a file lock, so runs accumulate (the
newest ``docs_keep_runs``, default 500; the index page lists the latest 50). A built page can be
copied to ``gs://`` for the plugin to serve. The site's files, lock and retention are their own
concern, apart from running a suite (:mod:`~fnd_core.ingest.quality`), which calls
:func:`build_docs` once a run is validated.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

SITE_NAME = "fnd"
# The docs index lists only the latest runs: building it loads every listed result (~5-10 ms
# each). Older pages stay on disk (reachable from fnd.validation_runs) until retention.
INDEX_RUNS = 50
# Retention: each docs build lists every stored run (~1 ms a run), so history is bounded.
DEFAULT_DOCS_KEEP_RUNS = 500


def gx_dir_for(data_docs_dir: Path) -> Path:
    """Where validation results behind a docs site are kept: a ``gx/`` sibling of the site."""
    return Path(data_docs_dir).absolute().parent / "gx"


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


def build_docs(
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
        context.build_data_docs(site_names=[SITE_NAME], resource_identifiers=resources)
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
        if site["site_name"] == SITE_NAME
    ]
    return Path(unquote(urlparse(url).path))
