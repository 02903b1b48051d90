"""The `fnd` command as a user runs it: a real process, real databases."""

from __future__ import annotations

from pathlib import Path

import pytest

from fnd_core.io import migrations
from fnd_core.io.db import make_engine
from tests.helpers import run_fnd


def test_db_upgrade_twice_then_status(create_database, tmp_path: Path):
    env = {"FND_DATABASE_URL": create_database(), "FND_HOME": str(tmp_path)}
    first = run_fnd("db", "upgrade", env=env)
    assert "applied  001_create_ingest_tables.sql" in first.stdout
    second = run_fnd("db", "upgrade", env=env)
    assert "nothing to apply" in second.stdout
    status = run_fnd("db", "status", env=env).stdout.splitlines()
    assert status and all(line.startswith("applied") for line in status)


@pytest.mark.slow
def test_db_upgrade_on_embedded_postgres(tmp_path: Path):
    """No FND_DATABASE_URL: fnd starts its own PostgreSQL under FND_HOME, and can stop it."""
    env = {"FND_HOME": str(tmp_path / "home")}
    try:
        assert "applied" in run_fnd("db", "upgrade", env=env).stdout
        assert "nothing to apply" in run_fnd("db", "upgrade", env=env).stdout
        url = run_fnd("db", "url", env=env).stdout.strip()
        engine = make_engine(url)
        with engine.connect() as conn:
            n = conn.exec_driver_sql("select count(*) from fnd.schema_migrations").scalar()
        engine.dispose()
        assert n == len(migrations.discover())
    finally:
        stopped = run_fnd("db", "stop", env=env, check=False)
    assert "stopped" in stopped.stdout


def test_config_masks_password(tmp_path: Path):
    env = {"FND_DATABASE_URL": "postgresql://u:hunter2@h/d", "FND_HOME": str(tmp_path)}
    out = run_fnd("config", env=env).stdout
    assert "hunter2" not in out
    assert "postgresql://u:***@h/d" in out


def test_unknown_command_fails_with_usage(tmp_path: Path):
    result = run_fnd("frobnicate", env={"FND_HOME": str(tmp_path)}, check=False)
    assert result.returncode != 0
    assert "No such command" in result.stderr


def test_demo_generate_twice_is_byte_identical(tmp_path: Path):
    env = {"FND_HOME": str(tmp_path)}
    for out in ("a", "b"):
        args = ("demo", "generate", "--posts", "200", "--out", str(tmp_path / out), "--seed", "7")
        assert "wrote 200 posts" in run_fnd(*args, env=env).stdout
    files_a = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*"))
    files_b = sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*"))
    assert files_a == files_b and len(files_a) > 200
    for rel in files_a:
        a, b = tmp_path / "a" / rel, tmp_path / "b" / rel
        assert a.is_dir() or a.read_bytes() == b.read_bytes(), rel


def test_evaluate_holds_out_each_event_and_prints_every_candidate_kind(tmp_path: Path):
    """`fnd evaluate` on a labelled folder, no database: leave-one-event-out, then one split."""
    import json

    env = {"FND_HOME": str(tmp_path / "home"), "FND_MODEL_PRESET": "tiny", "FND_CV_FOLDS": "3"}
    out = tmp_path / "landing"
    run_fnd("demo", "generate", "--posts", "120", "--out", str(out), "--seed", "3", env=env)
    (data,) = out.glob("*.jsonl")
    rows = [json.loads(line) for line in data.read_text().splitlines()]
    for i, row in enumerate(rows):
        row["event"] = "abc"[i % 3]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))

    logo = run_fnd("evaluate", str(out), "--holdout-groups", "event", "--epochs", "2", env=env)
    lines = logo.stdout.splitlines()
    assert lines[0].startswith("120 labelled posts (0 rows rejected")
    header = (
        "| held out | posts | fake share | fusion | linear | text_linear | char_ngram | prior |"
    )
    assert header in lines
    for event in "abc":
        assert any(line.startswith(f"| {event} | 40 | ") for line in lines), lines
    assert any(line.startswith("| **all held-out posts** | 120 |") for line in lines)

    one = run_fnd(
        "evaluate", str(out), "--holdout-groups", "event", "--holdout-values", "a,b",
        "--epochs", "2", env=env,
    )  # fmt: skip
    assert any(line.startswith("| a+b | 80 |") for line in one.stdout.splitlines())
    assert "| chosen | prior |" in one.stdout
    assert "gate estimates from the other posts (topic-disjoint CV) for a+b:" in one.stdout
    shipped = [line for line in one.stdout.splitlines() if "the gate would ship this" in line]
    assert len(shipped) == 1 and shipped[0].startswith("- ")

    bad = run_fnd("evaluate", str(out), "--holdout-groups", "event", "--holdout-values", "zz",
                  env=env, check=False)  # fmt: skip
    assert bad.returncode == 1
    assert bad.stderr.strip() == "Error: no labelled post has these holdout values: zz"


@pytest.mark.slow
def test_sweep_prints_every_candidate_the_winners_two_figures_and_the_gate(
    create_database, tmp_path: Path
):
    import json

    env = {"FND_DATABASE_URL": create_database(), "FND_HOME": str(tmp_path / "home"),
           "FND_MODEL_PRESET": "tiny", "FND_TRAIN_EPOCHS": "2", "FND_CV_REPEATS": "1"}  # fmt: skip
    run_fnd("db", "upgrade", env=env)
    landing = tmp_path / "landing"
    run_fnd("demo", "generate", "--posts", "160", "--out", str(landing), "--seed", "5", env=env)
    run_fnd("ingest", str(next(landing.glob("*.jsonl"))), env=env)
    space = tmp_path / "space.json"
    space.write_text(
        json.dumps(
            {
                "version": 1,
                "method": "grid",
                "parameters": {"kind": {"values": ["linear", "text_linear"]}},
            }
        )
    )
    out = run_fnd("sweep", "--space", str(space), "--budget", "4", env=env).stdout.splitlines()
    assert out[0].startswith("sweep sweep-") and out[0].endswith(": 2 candidates")
    rows = out[1:3]
    assert sum(line.startswith("*") for line in rows) == 1  # the winner is marked
    assert {json.loads(line[line.index("{") :])["kind"] for line in rows} == {
        "linear",
        "text_linear",
    }
    assert any(line.startswith("winner ") and "nested" in line and "optimism" in line
               for line in out)  # fmt: skip
    assert out[-1].startswith("gate: promote") or out[-1].startswith("gate: reject")


def test_sweep_refuses_a_bad_space_before_touching_anything(tmp_path: Path):
    space = tmp_path / "space.yaml"
    space.write_text("version: 1\nparameters:\n  hidden: {values: [16, 1000000]}\n")
    bad = run_fnd("sweep", "--space", str(space), env={"FND_HOME": str(tmp_path)}, check=False)
    assert bad.returncode == 2
    assert "'hidden' must lie in [8, 2048], got 1000000" in bad.stderr
