"""Test helpers that build real state: demo posts ingested, a tiny champion promoted."""

from __future__ import annotations

import contextlib
import http.server
import io
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import Engine

from fnd_core.ingest.load import ingest_file
from fnd_core.pipeline import retrain
from fnd_core.settings import Settings
from fnd_core.stack.demo import generate_batch


def ingest_demo(engine, settings: Settings, n_posts: int, *, seed: int = 0, **kwargs) -> dict:
    """Generate a demo batch in the landing zone and ingest it; returns the report."""
    batch = generate_batch(Path(settings.landing), n_posts, seed=seed, **kwargs)
    return ingest_file(engine, str(batch.data_file), settings).to_json()


def promote_tiny(engine, settings: Settings, *, epochs: int = 3, forced_by: str = "tests") -> str:
    """Run the retrain recipe with the tiny preset on what is in fnd.posts; force promotion."""
    outcome = retrain.run(engine, settings, forced_by=forced_by, preset="tiny", epochs=epochs)
    assert outcome["decision"] == "promote", outcome
    return outcome["version"]


@dataclass(frozen=True)
class ChampionRecipe:
    """How a module's ``champion`` is made: demo posts ingested, then the tiny preset promoted."""

    n_posts: int
    seed: int
    epochs: int = 3


@dataclass(frozen=True)
class SavedState:
    """The data tables and FND_HOME as a fixture left them, to hand each test an identical copy
    without redoing the work (a champion trained once per module instead of once per test)."""

    tables: dict[str, bytes]
    sequences: dict[str, int]
    home_copy: Path


def save_state(engine: Engine, tables: Sequence[str], home: Path, into: Path) -> SavedState:
    """COPY out each ``fnd.<table>`` and the sequences' positions; copy ``home`` into ``into``."""
    dumped: dict[str, bytes] = {}
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        for table in tables:
            buf = io.BytesIO()
            cur.copy_expert(f"copy fnd.{table} to stdout with (format binary)", buf)
            dumped[table] = buf.getvalue()
        cur.execute(
            "select sequencename, last_value from pg_sequences "
            "where schemaname = 'fnd' and last_value is not null"
        )
        sequences = dict(cur.fetchall())
    finally:
        raw.close()
    shutil.copytree(home, into, symlinks=True)
    return SavedState(dumped, sequences, into)


def restore_state(engine: Engine, state: SavedState, home: Path) -> None:
    """Put back exactly what ``save_state`` saw: the rows (ids included), the sequences, the files.

    FND_HOME comes back at the same path because rows hold absolute paths under it."""
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        cur.execute("set local session_replication_role = replica")  # rows in any table order
        cur.execute(f"truncate {', '.join(f'fnd.{t}' for t in state.tables)} restart identity")
        for table, data in state.tables.items():
            cur.copy_expert(f"copy fnd.{table} from stdin with (format binary)", io.BytesIO(data))
        for name, value in state.sequences.items():
            cur.execute("select setval(%s, %s)", (f"fnd.{name}", value))
        raw.commit()
    finally:
        raw.close()
    shutil.rmtree(home, ignore_errors=True)
    shutil.copytree(state.home_copy, home, symlinks=True)


@contextlib.contextmanager
def recording_server(body: bytes) -> Iterator[tuple[int, list[str]]]:
    """An HTTP server on 127.0.0.1 answering ``body`` to every GET: (its port, the paths asked
    for). A test of fnd's refusals asserts that the list stays empty."""
    hits: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            hits.append(self.path)
            self.send_response(200)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_port, hits
    finally:
        server.shutdown()


FND = [sys.executable, "-m", "fnd_core.stack.cli"]


def run_fnd(*args: str, env: dict[str, str], check: bool = True) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("FND_")}
    full_env.update(env)
    return subprocess.run(
        [*FND, *args], env=full_env, capture_output=True, text=True, check=check, timeout=120
    )
