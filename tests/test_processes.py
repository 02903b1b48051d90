"""Supervised processes: stopping a component reaches its whole tree; Postgres stops for real."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

from fnd_core.settings import Settings
from fnd_core.stack.processes import Component, alive, descendants, stop_components, stop_postgres

# A component whose child escapes into a process group of its own, as Airflow's task runners
# do: stopping the component must reach both.
TREE = textwrap.dedent(
    """
    import subprocess, sys, time
    escape = "import os, time; os.setpgid(0, 0); time.sleep(120)"
    child = subprocess.Popen([sys.executable, "-c", escape])
    print(child.pid, flush=True)
    time.sleep(120)
    """
)


def test_stop_components_leaves_no_process(tmp_path: Path):
    process = subprocess.Popen(
        [sys.executable, "-c", TREE], stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    child = int(process.stdout.readline())
    assert alive(child) and child in descendants(process.pid)
    started = time.monotonic()
    stop_components([Component("tree", process, tmp_path / "tree.log")], grace_s=3)
    assert process.returncode is not None
    assert not alive(child)
    assert time.monotonic() - started < 10


def test_stop_postgres_stops_the_embedded_server(tmp_path: Path):
    from fnd_core.io.db import embedded_database_url

    settings = Settings(home=tmp_path)
    embedded_database_url(settings)
    pgdata = settings.embedded_pgdata.resolve()
    pid = int((pgdata / "postmaster.pid").read_text().split()[0])
    assert alive(pid)
    assert stop_postgres(pgdata) is True
    assert not alive(pid)
    assert stop_postgres(pgdata) is False  # nothing left to stop
