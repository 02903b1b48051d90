"""Everything ``fnd up`` prepares before Airflow's components start, and what they are given.

Split from :mod:`fnd_core.stack.local` (which starts, supervises and stops the processes):
here are the databases (fnd's and Airflow's metadata, created and migrated), the credentials
(the UI password, the key that signs API tokens), the environment every component and task
runs with, and the first run's demo batch. Nothing here starts a long-running process.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from fnd_core.settings import Settings

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

REPO = Path(__file__).resolve().parents[2]
AUTH_MANAGER = "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
AIRFLOW_DATABASE = "airflow"
RETRY_DELAY_S = 30


@dataclass(frozen=True)
class StackOptions:
    """How to run the stack; every field has the default ``make run`` uses."""

    port: int = 8080
    host: str = "127.0.0.1"
    username: str = "admin"
    airflow_home: Path | None = None  # None: $AIRFLOW_HOME, else $FND_HOME/airflow
    airflow_db_url: str | None = None  # None: database `airflow` on fnd's server
    demo_posts: int = 1500  # ~1,000 training posts: the demo's fusion is learnt at >0.95
    demo_seed: int = 7
    kickoff: bool = True
    dags_folder: Path = REPO / "dags"
    plugins_folder: Path = REPO / "plugins"
    executor: str = "local"  # or "celery": N workers on FND_CELERY_BROKER_URL
    workers: int = 2  # Celery workers on the default queue
    train_workers: int = 1  # more, serving only FND_TRAIN_QUEUE when it is not "default"

    @property
    def url(self) -> str:
        host = "localhost" if self.host in {"0.0.0.0", "127.0.0.1", "::"} else self.host
        return f"http://{host}:{self.port}"


@dataclass(frozen=True)
class Stack:
    """Everything prepared for the components: where things are and the environment they get."""

    fnd_url: str
    airflow_db_url: str
    airflow_home: Path
    username: str
    password: str
    env: dict[str, str]

    @property
    def log_dir(self) -> Path:
        return self.airflow_home / "logs" / "components"


def resolve_airflow_home(settings: Settings, environ: Mapping[str, str] = os.environ) -> Path:
    """``$AIRFLOW_HOME`` if set, else ``$FND_HOME/airflow`` (absolute)."""
    return Path(environ.get("AIRFLOW_HOME") or settings.home / "airflow").resolve()


def sibling_database_url(url: str, database: str) -> str:
    """The URL of another database on the same server (same user, host, socket, options)."""
    from sqlalchemy.engine import make_url

    from fnd_core.io.db import sqlalchemy_url

    target = make_url(sqlalchemy_url(url)).set(database=database)
    return target.render_as_string(hide_password=False)


def ensure_database(url: str) -> bool:
    """Create the database of ``url`` if it is missing (connecting to ``postgres`` or itself).

    Returns True when it was created. Needs CREATEDB on that server.
    """
    import sqlalchemy as sa
    from sqlalchemy.engine import make_url

    from fnd_core.io.db import make_engine

    name = make_url(url).database
    if not name:
        raise ValueError(f"database URL {url!r} names no database")
    last_error: Exception | None = None
    for maintenance in ("postgres", "template1"):
        engine = make_engine(sibling_database_url(url, maintenance), isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as conn:
                found = conn.execute(
                    sa.text("select 1 from pg_database where datname = :n"), {"n": name}
                ).scalar()
                if not found:
                    conn.exec_driver_sql(f'create database "{name}"')
                return not found
        except sa.exc.OperationalError as exc:
            last_error = exc
        finally:
            engine.dispose()
    raise ValueError(f"cannot reach the server of {url!r} to create {name!r}: {last_error}")


def connection_json(url: str) -> str:
    """Airflow connection JSON (``AIRFLOW_CONN_FND_DB``) for a Postgres URL.

    A Unix-socket URL (``?host=/path``) keeps its path in extra ``host``, which
    ``fnd_airflow.connections.database_url`` turns back into the same URL.
    """
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    conn: dict[str, object] = {"conn_type": "postgres", "schema": parsed.database}
    for key, value in (
        ("host", parsed.host),
        ("port", parsed.port),
        ("login", parsed.username),
        ("password", parsed.password),
    ):
        if value:
            conn[key] = value
    extra = {k: v for k, v in parsed.query.items() if k in {"host", "sslmode", "options"}}
    if extra:
        conn["extra"] = extra
    return json.dumps(conn)


def ensure_password(path: Path, username: str) -> str:
    """The user's password from SimpleAuthManager's passwords file, generated on first use."""
    passwords = json.loads(path.read_text()) if path.exists() else {}
    if username not in passwords:
        passwords[username] = secrets.token_urlsafe(12)
        _write_private(path, json.dumps(passwords, indent=2) + "\n")
    return passwords[username]


def ensure_jwt_secret(path: Path) -> str:
    """The key that signs Airflow's API tokens, generated once (64 random bytes, hex).

    Airflow's own generated default is 16 bytes, below the 64 that RFC 7518 asks of the
    HMAC-SHA512 it signs with (PyJWT warns on every token).
    """
    if not path.exists():
        _write_private(path, secrets.token_hex(64) + "\n")
    return path.read_text().strip()


def reader_password(settings: Settings) -> str:
    """The password of the read-only login ``fnd_ui``: ``FND_DB_READ_PASSWORD``, else the one
    kept in ``FND_HOME/db_read_password`` (generated there, owner-only, the first time)."""
    if settings.db_read_password:
        return settings.db_read_password
    path = settings.home / "db_read_password"
    if path.exists():
        return path.read_text().strip()
    password = secrets.token_hex(24)  # hex: sits in a connection URL unescaped
    _write_private(path, password + "\n")
    return password


def ensure_reader_login(engine: Engine, settings: Settings) -> str | None:
    """Set ``fnd_ui``'s password (see :func:`reader_password`); the password, or None when
    this database user may not alter roles."""
    from fnd_core.io.db import set_reader_login_password

    password = reader_password(settings)
    return password if set_reader_login_password(engine, password) else None


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path``, readable by its owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600, exist_ok=True)
    path.chmod(0o600)
    path.write_text(text)


def airflow_env(
    settings: Settings,
    options: StackOptions,
    *,
    fnd_url: str,
    airflow_db_url: str,
    airflow_home: Path,
    passwords_file: Path,
    jwt_secret: str,
    base: Mapping[str, str] = os.environ,
) -> dict[str, str]:
    """The environment every Airflow component (and so every task) runs with."""
    from fnd_core.io.db import sqlalchemy_url

    execution_host = "127.0.0.1" if options.host in {"0.0.0.0", "::"} else options.host
    env = dict(base)
    env.update(
        {
            "AIRFLOW_HOME": str(airflow_home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(options.dags_folder.resolve()),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(options.plugins_folder.resolve()),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__AUTH_MANAGER": AUTH_MANAGER,
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{options.username}:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords_file),
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": (
                f"http://{execution_host}:{options.port}/execution/"
            ),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": sqlalchemy_url(airflow_db_url),
            "AIRFLOW__API__HOST": options.host,
            "AIRFLOW__API__PORT": str(options.port),
            "AIRFLOW_CONN_FND_DB": connection_json(fnd_url),
            # Tasks read FND_* settings; make the paths absolute (workers may change cwd).
            "FND_HOME": str(settings.home.resolve()),
            "FND_DATABASE_URL": fnd_url,
        }
    )
    env.pop("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC", None)  # derived from the sync URL
    env.setdefault("AIRFLOW__API_AUTH__JWT_SECRET", jwt_secret)  # the user's own key wins
    # A failed task waits this long before its retry (Airflow's default: 300 s). Most failures
    # here are a lost worker or a restarted database: back within seconds.
    env.setdefault("AIRFLOW__CORE__DEFAULT_TASK_RETRY_DELAY", str(RETRY_DELAY_S))
    _size_for_this_machine(env, settings, options, airflow_db_url)
    return env


def _size_for_this_machine(
    env: dict[str, str], settings: Settings, options: StackOptions, airflow_db_url: str
) -> None:
    """Set parallelism, torch threads and (Celery) worker slots in ``env`` for this machine's
    cores."""
    # LocalExecutor forks this many workers up front; Airflow's 32 only cost memory here.
    cpus = os.cpu_count() or 1
    env.setdefault("AIRFLOW__CORE__PARALLELISM", str(max(4, 2 * cpus)))
    # Torch threads per task: tasks run side by side (scoring shards), and oversubscribed
    # intra-op threads collapse throughput (measured on 2 busy cores: 6.3 img/s with one
    # thread, 1.2 with two). Half the cores each, unless the user set FND_CPU_THREADS.
    if not env.get("FND_CPU_THREADS"):
        env["FND_CPU_THREADS"] = str(max(1, cpus // 2))
    if options.executor == "celery":
        from fnd_core.stack.workers import HEARTBEAT_TIMEOUT_S, celery_env

        slots = max(1, cpus // options.workers)  # one task per core across the workers
        env.update(celery_env(airflow_db_url, settings.celery_broker_url, concurrency=slots))
        env.setdefault("AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT",
                       str(HEARTBEAT_TIMEOUT_S))  # fmt: skip


def prepare(settings: Settings, options: StackOptions, echo: Callable[[str], None]) -> Stack:
    """Database(s), migrations, password, environment: everything before the components start."""
    from fnd_core.io import migrations
    from fnd_core.io.db import database_url, make_engine, reader_login_url

    fnd_url = database_url(settings)
    airflow_db_url = (
        options.airflow_db_url
        or os.environ.get("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN")
        or sibling_database_url(fnd_url, AIRFLOW_DATABASE)
    )
    if not _db_driver(airflow_db_url).startswith("postgresql"):
        raise ValueError(f"Airflow's metadata database must be PostgreSQL, not {airflow_db_url!r}")
    if ensure_database(airflow_db_url):
        echo(f"created the Airflow metadata database {_db_name(airflow_db_url)!r}")
    engine = make_engine(fnd_url)
    try:
        applied = migrations.upgrade(engine)
        read_password = ensure_reader_login(engine, settings)
    finally:
        engine.dispose()
    echo(f"fnd migrations: {len(applied)} applied" if applied else "fnd database is up to date")

    home = options.airflow_home or resolve_airflow_home(settings)
    home.mkdir(parents=True, exist_ok=True)
    passwords_file = home / "simple_auth_manager_passwords.json"
    password = ensure_password(passwords_file, options.username)
    env = airflow_env(
        settings,
        options,
        fnd_url=fnd_url,
        airflow_db_url=airflow_db_url,
        airflow_home=home,
        passwords_file=passwords_file,
        jwt_secret=ensure_jwt_secret(home / "jwt_secret"),
    )
    if read_password is not None:  # the UI plugin logs in as fnd_ui: it can only read
        env["AIRFLOW_CONN_FND_DB_READ"] = connection_json(reader_login_url(fnd_url, read_password))
    stack = Stack(
        fnd_url=fnd_url,
        airflow_db_url=airflow_db_url,
        airflow_home=home,
        username=options.username,
        password=password,
        env=env,
    )
    stack.log_dir.mkdir(parents=True, exist_ok=True)
    echo("migrating Airflow's metadata database (airflow db migrate) ...")
    migrate_airflow(env, stack.log_dir / "db-migrate.log")
    return stack


def migrate_airflow(env: Mapping[str, str], log: Path) -> None:
    """``airflow db migrate`` (idempotent; creates airflow.cfg with its secrets the first time)."""
    with log.open("ab") as out:
        done = subprocess.run(
            [sys.executable, "-m", "airflow", "db", "migrate"],
            env=dict(env),
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=REPO,
            check=False,
        )
    if done.returncode != 0:
        raise RuntimeError(f"airflow db migrate failed (exit {done.returncode}); see {log}")


def seed_demo(engine: Engine, settings: Settings, n_posts: int, seed: int) -> Path | None:
    """Drop a demo batch in the landing zone on a first run: no posts yet and nothing waiting."""
    import sqlalchemy as sa

    from fnd_core.ingest.load import list_new_files
    from fnd_core.io import storage
    from fnd_core.stack.demo import generate_batch

    if n_posts <= 0 or not storage.is_local(settings.landing):
        return None
    with engine.connect() as conn:
        if conn.execute(sa.text("select exists (select 1 from fnd.posts)")).scalar():
            return None
    landing = Path(storage.local_path(settings.landing))
    if landing.exists() and list_new_files(str(landing), settings):
        return None
    return generate_batch(landing, n_posts, seed=seed).data_file


def _db_name(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).database or "?"


def _db_driver(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).drivername
