"""Where fnd's non-Python assets live: SQL migrations and expectation suites (repo folders)."""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
SQL_DIR = REPO_ROOT / "sql"
EXPECTATIONS_DIR = REPO_ROOT / "expectations"
SWEEPS_DIR = REPO_ROOT / "sweeps"  # model search spaces (fnd_core.pipeline.sweep_space)
