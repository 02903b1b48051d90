"""Airflow test environment: a private AIRFLOW_HOME (SQLite metadata) with our dags/ folder.

The variables are set when this conftest is imported, before any test module imports
airflow, because Airflow reads its configuration once at import.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from fnd_core.stack.local_setup import ensure_jwt_secret

REPO = Path(__file__).resolve().parents[2]
DAGS_DIR = REPO / "dags"
_HOME = Path(tempfile.mkdtemp(prefix="fnd-airflow-test-"))

os.environ["AIRFLOW_HOME"] = str(_HOME)
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(DAGS_DIR)
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__UNIT_TEST_MODE"] = "False"
os.environ["AIRFLOW__LOGGING__LOGGING_LEVEL"] = "WARNING"
# A key as long as `fnd up` makes (Airflow's generated one is too short for HMAC-SHA512).
os.environ["AIRFLOW__API_AUTH__JWT_SECRET"] = ensure_jwt_secret(_HOME / "jwt_secret")


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """A migrated Airflow metadata database (SQLite in the private AIRFLOW_HOME)."""
    subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"],
        check=True,
        capture_output=True,
        env=os.environ.copy(),
        timeout=300,
    )
    return _HOME


@pytest.fixture
def fnd_env(monkeypatch, db_url: str, tmp_path: Path):
    """Point fnd (settings + the fnd_db connection) at the test database and a temp home."""
    home = tmp_path / "fnd_home"
    monkeypatch.setenv("FND_HOME", str(home))
    monkeypatch.setenv("FND_DATABASE_URL", db_url)
    monkeypatch.setenv("AIRFLOW_CONN_FND_DB", db_url.replace("+psycopg2", ""))
    for key in list(os.environ):
        if key.startswith("FND_") and key not in {"FND_HOME", "FND_DATABASE_URL"}:
            monkeypatch.delenv(key)
    monkeypatch.setenv("FND_NESTED_SELECTION", "0")  # see tests/conftest.py
    return home
