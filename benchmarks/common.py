"""Shared plumbing for the benchmarks: a throwaway database, a work folder, timing, output.

Benchmarks print figures (and ratios against a baseline measured in the same run); they
never assert on time. Each creates its own database on FND_BENCH_DATABASE_URL's server
(default: the local Postgres) and drops it afterwards.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import platform
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy.engine import make_url

from fnd_core.io import migrations
from fnd_core.io.db import make_engine
from fnd_core.settings import Settings

DEFAULT_SERVER = "postgresql://postgres@127.0.0.1:5432/test"


@contextlib.contextmanager
def bench_database() -> Iterator[str]:
    """A fresh migrated database; dropped on exit."""
    server = os.environ.get("FND_BENCH_DATABASE_URL", DEFAULT_SERVER)
    admin = make_engine(server, isolation_level="AUTOCOMMIT")
    name = f"fnd_bench_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f'create database "{name}"')
    url = make_url(server).set(database=name).render_as_string(hide_password=False)
    try:
        engine = make_engine(url)
        migrations.upgrade(engine)
        engine.dispose()
        yield url
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'drop database if exists "{name}" with (force)')
        admin.dispose()


@contextlib.contextmanager
def bench_home() -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="fnd-bench-"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def bench_settings(home: Path, url: str, **overrides) -> Settings:
    """Defaults, with any FND_* of the environment (e.g. FND_NESTED_SELECTION=0) applied."""
    return dataclasses.replace(Settings.from_env(), home=home, database_url=url, **overrides)


class Timer:
    def __enter__(self) -> Timer:
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        self.seconds = time.perf_counter() - self.start


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}"


def table(rows: list[tuple], headers: tuple[str, ...]) -> str:
    """A Markdown table, ready to paste into the README."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)
