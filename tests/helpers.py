"""Test helpers that build real state: demo posts ingested, a tiny champion promoted."""

from __future__ import annotations

import contextlib
import http.server
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

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
