"""Expectation suites as files: find a suite's JSON, check its shape, resolve its parameters.

Suites live as GX 1.x ExpectationSuite JSON in ``expectations/`` (``posts``, ``training_set``).
Thresholds are GX suite parameters: an expectation kwarg ``{"$PARAMETER": "max_text_chars"}``
takes its default from the suite JSON's ``suite_parameters`` and can be overridden per run; an
unknown name is a ``ValueError``, not a silent no-op. None of this needs GX itself, so it lives
apart from the run in :mod:`~fnd_core.ingest.quality` (which turns the checked JSON into a GX
suite) and can be used without importing GX.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fnd_core.settings import Settings


def suite_path(expectations_dir: Path, suite_name: str) -> Path:
    """The JSON file of a suite; names are plain identifiers so they cannot escape the folder."""
    if not re.fullmatch(r"[A-Za-z0-9_]+", suite_name or ""):
        raise ValueError(f"suite name {suite_name!r} must be letters, digits or underscores")
    return Path(expectations_dir) / f"{suite_name}.json"


def load_suite_config(expectations_dir: Path, suite_name: str) -> dict[str, Any]:
    """Read a suite's JSON and check its shape, with errors that name the file.

    Returns the parsed dict (GX 1.x ExpectationSuite JSON). The expectation types and kwargs
    themselves are checked by GX when the suite is built
    (see :func:`fnd_core.ingest.quality.build_suite`).
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
