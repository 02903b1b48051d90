"""Registry transitions against Postgres: one champion, history kept."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from fnd_core.pipeline import registry

SHA = "b" * 64


def _candidate(engine, version: str) -> None:
    registry.register_candidate(
        engine,
        version=version,
        preset="tiny",
        config={"preset": "tiny"},
        metrics={"test": {"accuracy": 0.9}},
        artifact_uri=f"store/models/{version}",
        artifact_sha256=SHA,
        counts={"train": 70, "val": 15, "test": 15},
        run_id="test",
    )


def test_promotion_retires_previous_champion(clean_db):
    _candidate(clean_db, "m1")
    assert registry.promote(clean_db, "m1", {"decision": "promote"}) is None
    _candidate(clean_db, "m2")
    assert registry.promote(clean_db, "m2", {"decision": "promote"}) == "m1"
    assert registry.current_champion(clean_db).version == "m2"
    assert registry.get_version(clean_db, "m1").status == "retired"


def test_rejection_keeps_champion(clean_db):
    _candidate(clean_db, "m1")
    registry.promote(clean_db, "m1", {"decision": "promote"})
    _candidate(clean_db, "m2")
    registry.reject(clean_db, "m2", {"decision": "reject", "reason": "failed: accuracy"})
    assert registry.current_champion(clean_db).version == "m1"
    rejected = registry.get_version(clean_db, "m2")
    assert rejected.status == "rejected"
    assert rejected.gate["reason"] == "failed: accuracy"


def test_forced_promotion_records_who(clean_db):
    _candidate(clean_db, "m1")
    registry.promote(clean_db, "m1", {"decision": "promote", "forced_by": "alice"})
    with clean_db.connect() as conn:
        forced = conn.exec_driver_sql("select forced_by from fnd.model_versions").scalar()
    assert forced == "alice"


def test_only_candidates_move(clean_db):
    _candidate(clean_db, "m1")
    registry.reject(clean_db, "m1", {"decision": "reject"})
    with pytest.raises(ValueError, match="only a candidate"):
        registry.promote(clean_db, "m1", {})
    with pytest.raises(LookupError):
        registry.get_version(clean_db, "nope")


def test_version_ids_sort_by_time():
    a = registry.new_version_id(datetime(2026, 1, 1, tzinfo=UTC), "x")
    b = registry.new_version_id(datetime(2026, 1, 2, tzinfo=UTC), "x")
    assert a < b and a.startswith("m20260101T000000-")
