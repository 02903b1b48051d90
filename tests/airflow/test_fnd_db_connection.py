"""`fnd up` hands fnd's database to tasks as AIRFLOW_CONN_FND_DB: the URL must survive the trip."""

from __future__ import annotations

import pytest
from sqlalchemy.engine import make_url

from fnd_core.stack.local_setup import connection_json

pytestmark = pytest.mark.airflow

URLS = [
    "postgresql://postgres:@/fnd?host=/abs/.fnd/pgdata",  # the embedded server's socket
    "postgresql://postgres@127.0.0.1:5432/fnd_test_1",
    "postgresql+psycopg2://u:p%40ss@db.example:6543/fnd?sslmode=require",
]


@pytest.mark.parametrize("url", URLS)
def test_connection_round_trip(url):
    from airflow.models.connection import Connection

    from fnd_airflow.connections import database_url
    from fnd_core.settings import Settings

    conn = Connection.from_json(connection_json(url), conn_id="fnd_db")
    found = database_url(Settings(), ("fnd_db",), {"fnd_db": conn}.get)
    back, original = make_url(found), make_url(url)
    assert back.drivername == "postgresql+psycopg2"
    for part in ("username", "host", "port", "database"):
        assert getattr(back, part) == getattr(original, part), part
    assert (back.password or None) == (original.password or None)
    assert dict(back.query) == dict(original.query)
