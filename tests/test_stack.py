"""The stack runner's pieces that need no Airflow: URLs, credentials, environment, demo."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from fnd_core.settings import Settings
from fnd_core.stack.local_setup import (
    StackOptions,
    airflow_env,
    connection_json,
    ensure_database,
    ensure_jwt_secret,
    ensure_password,
    seed_demo,
    sibling_database_url,
)

SOCKET_URL = "postgresql://postgres:@/fnd?host=/abs/.fnd/pgdata"


def test_sibling_database_keeps_server_user_and_socket():
    url = make_url(sibling_database_url(SOCKET_URL, "airflow"))
    assert (url.drivername, url.username, url.host, url.database) == (
        "postgresql+psycopg2",
        "postgres",
        None,
        "airflow",
    )
    assert dict(url.query) == {"host": "/abs/.fnd/pgdata"}
    tcp = sibling_database_url("postgresql://u:s3cret@db.example:6543/fnd?sslmode=require", "af")
    assert tcp == "postgresql+psycopg2://u:s3cret@db.example:6543/af?sslmode=require"


def test_connection_json_socket_path_goes_to_extra_host():
    conn = json.loads(connection_json(SOCKET_URL))
    assert conn == {
        "conn_type": "postgres",
        "schema": "fnd",
        "login": "postgres",
        "extra": {"host": "/abs/.fnd/pgdata"},
    }


def test_connection_json_tcp():
    conn = json.loads(connection_json("postgresql+psycopg2://u:p%40ss@h:5433/fnd"))
    assert conn == {
        "conn_type": "postgres",
        "schema": "fnd",
        "host": "h",
        "port": 5433,
        "login": "u",
        "password": "p@ss",
    }


def test_password_generated_once_and_private(tmp_path: Path):
    path = tmp_path / "af" / "passwords.json"
    first = ensure_password(path, "admin")
    assert len(first) >= 12
    assert ensure_password(path, "admin") == first
    assert path.stat().st_mode & 0o077 == 0
    assert json.loads(path.read_text()) == {"admin": first}


def test_jwt_secret_generated_once_long_and_private(tmp_path: Path):
    path = tmp_path / "af" / "jwt_secret"
    first = ensure_jwt_secret(path)
    assert len(bytes.fromhex(first)) == 64  # RFC 7518: HMAC-SHA512 keys of 64 bytes at least
    assert ensure_jwt_secret(path) == first
    assert path.stat().st_mode & 0o077 == 0
    assert ensure_jwt_secret(tmp_path / "other") != first


def test_airflow_env_points_every_component_at_the_same_places(tmp_path: Path):
    settings = Settings(home=tmp_path / "home")
    options = StackOptions(port=9123)
    env = airflow_env(
        settings,
        options,
        fnd_url=SOCKET_URL,
        airflow_db_url="postgresql://postgres@/airflow?host=/abs/.fnd/pgdata",
        airflow_home=tmp_path / "af",
        passwords_file=tmp_path / "af" / "pw.json",
        jwt_secret="k" * 128,
        base={"AIRFLOW__CORE__PARALLELISM": "7", "PATH": "/bin"},
    )
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql+psycopg2://")
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://127.0.0.1:9123/execution/"
    assert env["AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION"] == "False"
    assert env["AIRFLOW__CORE__LOAD_EXAMPLES"] == "False"
    assert env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
    assert env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"] == "admin:admin"
    assert Path(env["AIRFLOW__CORE__DAGS_FOLDER"]).name == "dags"
    assert env["AIRFLOW__CORE__PARALLELISM"] == "7"  # the user's choice wins
    assert env["AIRFLOW__CORE__DEFAULT_TASK_RETRY_DELAY"] == "30"  # Airflow's own: 300
    assert Path(env["FND_HOME"]).is_absolute()
    assert env["AIRFLOW__API_AUTH__JWT_SECRET"] == "k" * 128
    assert json.loads(env["AIRFLOW_CONN_FND_DB"])["extra"] == {"host": "/abs/.fnd/pgdata"}


def test_ensure_database_creates_once(create_database):
    url = create_database()
    target = make_url(url).set(database=make_url(url).database + "_af")
    target_url = target.render_as_string(hide_password=False)
    try:
        assert ensure_database(target_url) is True
        assert ensure_database(target_url) is False
    finally:
        from fnd_core.io.db import make_engine

        admin = make_engine(url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.exec_driver_sql(f'drop database if exists "{target.database}" with (force)')
        admin.dispose()


def test_seed_demo_only_on_a_first_run(clean_db, settings: Settings):
    assert seed_demo(clean_db, settings, 0, seed=1) is None  # asked for none
    demo = seed_demo(clean_db, settings, 5, seed=1)
    assert demo is not None and demo.exists()
    assert seed_demo(clean_db, settings, 5, seed=1) is None  # the landing zone is not empty


@pytest.mark.parametrize(
    "host, url", [("127.0.0.1", "http://localhost:8080"), ("h", "http://h:8080")]
)
def test_options_url(host, url):
    assert StackOptions(host=host).url == url
