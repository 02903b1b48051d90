"""A child process for the fault-injection suite: one fnd step, killed or paused at a point.

Run as ``python -m tests.fault_child SPEC_JSON``. The spec names the step (``ingest``,
``score``, ``train``), where to die (``kill_at``: SIGKILL to itself, as the OOM killer or a
lost node would) or to pause (``pause_at``: it writes ``pause_file`` and sleeps, so the test
can restart Postgres under it). The patches only add the fault: the step itself is fnd's own
code, run as the CLI or an Airflow task would run it.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path


def _fault(spec: dict, point: str) -> None:
    if spec.get("kill_at") == point:
        os.kill(os.getpid(), signal.SIGKILL)
    if spec.get("pause_at") == point:
        Path(spec["pause_file"]).write_text(point)
        time.sleep(spec.get("pause_seconds", 8))


def _before(spec: dict, module, name: str, point: str, *, nth: int = 1) -> None:
    """Fault at ``point`` just before the ``nth`` call of ``module.name``."""
    real, calls = getattr(module, name), [0]

    def patched(*args, **kwargs):
        calls[0] += 1
        if calls[0] == nth:
            _fault(spec, point)
        return real(*args, **kwargs)

    setattr(module, name, patched)


def _after(spec: dict, module, name: str, point: str) -> None:
    """Fault at ``point`` just after the first call of ``module.name`` returns."""
    real = getattr(module, name)

    def patched(*args, **kwargs):
        result = real(*args, **kwargs)
        _fault(spec, point)
        return result

    setattr(module, name, patched)


def main(spec: dict) -> None:
    from fnd_core.ingest import batches, staging
    from fnd_core.ingest import load as ingest
    from fnd_core.io import storage
    from fnd_core.io.db import make_engine
    from fnd_core.pipeline import prediction_store, retrain, scoring
    from fnd_core.settings import Settings

    settings = Settings(
        home=Path(spec["home"]), database_url=spec["url"], model_preset="tiny",
        nested_selection=False,
    )  # fmt: skip
    engine = make_engine(spec["url"])
    step = spec["step"]
    if step == "ingest":
        staging.CHUNK_ROWS = spec.get("chunk_rows", staging.CHUNK_ROWS)
        _before(spec, staging, "copy_into", "before_copy")
        _before(spec, staging, "copy_into", "between_chunks", nth=3)
        _before(spec, staging, "record_validation", "after_copy")
        _before(spec, batches, "move_aside", "after_commit")
        _after(spec, storage, "move", "after_move")
        report = ingest.ingest_file(engine, spec["file"], settings, run_id=spec["run_id"])
        print(json.dumps(report.to_json()))
    elif step == "score":
        _before(spec, prediction_store, "write_page", "before_write")
        _before(spec, prediction_store, "write_page", "between_pages", nth=2)
        report = scoring.score_shard(
            engine, settings, model_version=spec["version"], page_size=spec.get("page_size", 20),
            run_id=spec["run_id"],
        )  # fmt: skip
        print(json.dumps(report.to_json()))
    elif step == "train":  # the fnd_retrain DAG's train task, given its snapshot
        from fnd_core.pipeline import registry

        _before(spec, registry, "register_candidate", "before_register")
        _after(spec, registry, "register_candidate", "after_register")
        candidate = retrain.train_candidate(
            engine, settings, spec["snap"], preset="tiny", epochs=2, run_id=spec["run_id"]
        )
        print(json.dumps({"version": candidate["version"]}))
    else:
        raise SystemExit(f"unknown step {step!r}")


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
