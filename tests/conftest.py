"""Shared fixtures: a fresh, migrated Postgres database per test session.

The server is ``FND_TEST_DATABASE_URL`` (default: the local Postgres); when nothing answers
there, an embedded PostgreSQL (pgserver) in a temporary folder stands in. Each session
creates its own uniquely named database and drops it at the end, so runs never collide.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine, make_url

from fnd_core.io import migrations
from fnd_core.io.db import make_engine
from fnd_core.settings import Settings
from tests.helpers import (
    ChampionRecipe,
    SavedState,
    ingest_demo,
    promote_tiny,
    restore_state,
    save_state,
)

# Nested selection refits every kind in every outer fold (kinds x folds x folds head fits): its
# own tests turn it on (tests/test_nested_selection.py); the rest of the suite does without.
os.environ.setdefault("FND_NESTED_SELECTION", "0")

DEFAULT_TEST_SERVER = "postgresql://postgres@127.0.0.1:5432/test"
DATA_TABLES = (
    "training_lease",
    "sweep_candidates",
    "sweeps",
    "drift_reports",
    "performance_alerts",
    "performance_estimates",
    "prediction_evidence",
    "predictions",
    "scoring_errors",
    "model_versions",
    "quarantine",
    "validation_runs",
    "posts",
    "labels",
    "ingest_batches",
    "settings",
)


def _server_answers(url: str) -> bool:
    engine = make_engine(url, connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("select 1")
        return True
    except sa.exc.OperationalError:
        return False
    finally:
        engine.dispose()


@pytest.fixture(scope="session")
def pg_admin_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of a database on a server where the tests may create databases."""
    url = os.environ.get("FND_TEST_DATABASE_URL", DEFAULT_TEST_SERVER)
    if _server_answers(url):
        yield url
        return
    from fnd_core.io.db import embedded_database_url
    from fnd_core.stack.processes import stop_embedded

    settings = Settings(home=tmp_path_factory.mktemp("embedded-pg"))
    yield embedded_database_url(settings)
    stop_embedded(settings)


@pytest.fixture(scope="session")
def create_database(pg_admin_url: str) -> Iterator:
    """Factory: a new empty database on the test server, dropped at the end of the session."""
    created: list[str] = []
    admin = make_engine(pg_admin_url, isolation_level="AUTOCOMMIT")

    def create() -> str:
        name = f"fnd_test_{uuid.uuid4().hex[:12]}"
        with admin.connect() as conn:
            conn.exec_driver_sql(f'create database "{name}"')
        created.append(name)
        return make_url(pg_admin_url).set(database=name).render_as_string(hide_password=False)

    yield create
    with admin.connect() as conn:
        for name in created:
            conn.exec_driver_sql(f'drop database if exists "{name}" with (force)')
    admin.dispose()


@pytest.fixture(scope="session")
def db_url(create_database) -> str:
    """A migrated database shared by the session's tests."""
    url = create_database()
    engine = make_engine(url)
    migrations.upgrade(engine)
    engine.dispose()
    return url


@pytest.fixture(scope="session")
def engine(db_url: str) -> Iterator[Engine]:
    eng = make_engine(db_url)
    yield eng
    eng.dispose()


def _truncate(engine: Engine) -> None:
    tables = ", ".join(f"fnd.{t}" for t in DATA_TABLES)
    with engine.begin() as conn:
        conn.exec_driver_sql(f"truncate {tables} restart identity cascade")


@pytest.fixture
def clean_db(engine: Engine) -> Engine:
    """The session database, emptied of data (schema kept) before the test."""
    _truncate(engine)
    return engine


@pytest.fixture
def settings(tmp_path: Path, db_url: str) -> Settings:
    """Settings pointing at the test database and a temporary FND_HOME. No settle window: the
    files a test lands are complete (the window has tests of its own, in test_ingest.py)."""
    return Settings(
        home=tmp_path / "fnd_home", database_url=db_url, landing_settle_seconds=0,
        nested_selection=False,
    )  # fmt: skip


@pytest.fixture(scope="module")
def stable_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("stable") / "fnd_home"


@pytest.fixture
def stable_settings(stable_home: Path, db_url: str) -> Settings:
    """Like ``settings``, but at one FND_HOME path per module, emptied before each test, so that
    state saved once can be restored there: rows hold absolute paths under FND_HOME."""
    shutil.rmtree(stable_home, ignore_errors=True)
    return Settings(
        home=stable_home, database_url=db_url, landing_settle_seconds=0, nested_selection=False
    )


@pytest.fixture(scope="module")
def saved_champion(
    request: pytest.FixtureRequest,
    engine: Engine,
    db_url: str,
    stable_home: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[str, SavedState]:
    """The module's champion (its ``CHAMPION`` recipe), trained and promoted once, then saved."""
    recipe: ChampionRecipe = request.module.CHAMPION
    shutil.rmtree(stable_home, ignore_errors=True)
    _truncate(engine)
    settings = Settings(home=stable_home, database_url=db_url, nested_selection=False)
    ingest_demo(engine, settings, recipe.n_posts, seed=recipe.seed)
    version = promote_tiny(engine, settings, epochs=recipe.epochs)
    saved = save_state(engine, DATA_TABLES, stable_home, tmp_path_factory.mktemp("saved") / "home")
    return version, saved


@pytest.fixture
def champion(
    saved_champion: tuple[str, SavedState], clean_db: Engine, stable_settings: Settings
) -> str:
    """A promoted tiny champion over the module's demo posts: the saved state, restored for this
    test (rows, ids, sequences, model store and feature cache as training left them)."""
    version, saved = saved_champion
    restore_state(clean_db, saved, stable_settings.home)
    return version
