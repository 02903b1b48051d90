"""Where fnd's Postgres is and how to reach it.

A configured ``FND_DATABASE_URL`` wins. Without one, fnd starts an embedded PostgreSQL
(the ``pgserver`` package: real PostgreSQL binaries in a wheel) under ``FND_HOME/pgdata``,
left running so later commands, Airflow workers and ``psql`` reuse it.
"""

from __future__ import annotations

import logging
import warnings
from typing import TYPE_CHECKING, Any

from fnd_core.settings import Settings

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

log = logging.getLogger(__name__)

EMBEDDED_DATABASE = "fnd"


def database_url(settings: Settings) -> str:
    """The SQLAlchemy URL of fnd's database, starting the embedded server when none is set."""
    if settings.database_url:
        return settings.database_url
    return embedded_database_url(settings)


def embedded_database_url(settings: Settings) -> str:
    """Start (or reuse) the embedded PostgreSQL under FND_HOME and return its URL."""
    import sqlalchemy as sa

    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI): harmless here.
        warnings.simplefilter("ignore")
        import pgserver
    logging.getLogger("pgserver").setLevel(logging.WARNING)

    pgdata = settings.embedded_pgdata.resolve()
    pgdata.mkdir(parents=True, exist_ok=True)
    log.info("Using embedded PostgreSQL in %s", pgdata)
    # cleanup_mode=None: keep the server running after this process exits, so the next
    # command (or an Airflow task in another process) finds it already up.
    server = pgserver.get_server(pgdata, cleanup_mode=None)
    admin_url = server.get_uri("postgres")
    engine = make_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            exists = conn.execute(
                sa.text("select 1 from pg_database where datname = :name"),
                {"name": EMBEDDED_DATABASE},
            ).scalar()
            if not exists:
                conn.exec_driver_sql(f'create database "{EMBEDDED_DATABASE}"')
    finally:
        engine.dispose()
    return server.get_uri(EMBEDDED_DATABASE)


def sqlalchemy_url(url: str) -> str:
    """``url`` with the psycopg2 driver made explicit.

    SQLAlchemy 2.1 maps a bare ``postgresql://`` to psycopg 3; fnd's bulk writes use
    psycopg2's COPY, so every engine fnd makes names psycopg2.
    """
    for bare in ("postgresql://", "postgres://"):
        if url.startswith(bare):
            return "postgresql+psycopg2://" + url[len(bare) :]
    return url


def url_from_airflow_connection(conn: Any) -> str:
    """A SQLAlchemy URL from an Airflow Postgres connection (socket paths via extra ``host``).

    Duck-typed (login, password, host, port, schema, extra_dejson): fnd_core never imports airflow;
    the DAGs and the plugin pass the connection in.
    """
    from sqlalchemy.engine import URL

    extra = conn.extra_dejson or {}
    query = {k: str(v) for k, v in extra.items() if k in {"host", "sslmode", "options"}}
    return URL.create(
        "postgresql+psycopg2",
        username=conn.login or None,
        password=conn.password or None,
        host=conn.host or None,
        port=conn.port or None,
        database=conn.schema or None,
        query=query,
    ).render_as_string(hide_password=False)


CONNECT_TIMEOUT_S = 10
STATEMENT_TIMEOUT_MS = 30 * 60 * 1000  # no fnd statement should run 30 min; a stuck one fails
LOCK_TIMEOUT_MS = 5 * 60 * 1000


def make_engine(url: str, **kwargs: Any) -> Engine:
    """A psycopg2 engine for ``url``; pre-ping so long-lived workers survive restarts.

    Connecting gives up after 10 s and a statement after 30 min (a lock wait after 5 min), so
    a dead or wedged server fails the task (Airflow retries it) instead of hanging a worker.
    ``connect_args`` given by the caller win.
    """
    import sqlalchemy as sa

    parsed = sa.engine.make_url(sqlalchemy_url(url))
    timeouts = f"-c statement_timeout={STATEMENT_TIMEOUT_MS} -c lock_timeout={LOCK_TIMEOUT_MS}"
    own = parsed.query.get("options")  # the URL's own server options come after, so they win
    connect_args = {
        "connect_timeout": CONNECT_TIMEOUT_S,
        "options": f"{timeouts} {own}" if own else timeouts,
        **kwargs.pop("connect_args", {}),
    }
    return sa.create_engine(parsed, pool_pre_ping=True, connect_args=connect_args, **kwargs)


READER_ROLE = "fnd_reader"
READER_LOGIN = "fnd_ui"  # the login holding only READER_ROLE (sql/016), for the UI plugin


def set_reader_login_password(engine: Engine, password: str) -> bool:
    """Give the read-only login ``fnd_ui`` (created by migration 016) its password.

    Returns False, having changed nothing, when the migrating user may not alter roles (a
    managed database where an administrator sets it).
    """
    import sqlalchemy as sa

    try:
        with engine.begin() as conn:
            conn.exec_driver_sql(
                f"alter role {READER_LOGIN} with login password %(p)s", {"p": password}
            )
    except sa.exc.ProgrammingError as exc:  # insufficient privilege
        log.warning("could not set the password of %s: %s", READER_LOGIN, exc.orig)
        return False
    return True


def reader_login_url(url: str, password: str) -> str:
    """``url`` (fnd's database) as the read-only login ``fnd_ui`` with ``password``."""
    import sqlalchemy as sa

    parsed = sa.engine.make_url(sqlalchemy_url(url))
    return parsed.set(username=READER_LOGIN, password=password).render_as_string(
        hide_password=False
    )


def make_reader_engine(url: str, **kwargs: Any) -> Engine:
    """An engine that can only read: each connection takes the ``fnd_reader`` role (SELECT on
    fnd's tables and views, granted by migration 008) and opens read-only transactions.

    For the UI plugin: whatever SQL a page ends up sending, it cannot write. ``url`` may name
    a login that holds only ``fnd_reader`` (the strongest set-up); with the owner's login,
    the role and read-only mode still apply to every statement the plugin sends.
    """
    import sqlalchemy as sa

    engine = make_engine(url, **kwargs)

    @sa.event.listens_for(engine, "connect")
    def _read_only(dbapi_conn: Any, _record: Any) -> None:
        with dbapi_conn.cursor() as cur:
            cur.execute(f"set role {READER_ROLE}")
            cur.execute("set session characteristics as transaction read only")
        dbapi_conn.commit()

    return engine


def engine_from_settings(settings: Settings | None = None) -> Engine:
    """The engine fnd's CLI uses: settings from the environment unless given."""
    settings = settings or Settings.from_env()
    return make_engine(database_url(settings))


def psql_command(url: str) -> str:
    """A copy-pasteable psql command for ``url`` (SQLAlchemy driver suffix removed)."""
    plain = url.replace("postgresql+psycopg2://", "postgresql://", 1)
    return f"psql '{plain}'"
