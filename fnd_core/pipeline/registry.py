"""The model registry in ``fnd.model_versions``: candidate -> champion / rejected / retired.

Promotion retires the old champion and crowns the new one in one transaction; the unique
partial index ``model_versions_one_champion`` makes two champions impossible even if two
promotions race.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, Engine


@dataclass(frozen=True)
class ModelVersion:
    version: str
    status: str
    preset: str
    artifact_uri: str | None
    artifact_sha256: str | None
    config: dict[str, Any]
    metrics: dict[str, Any]
    gate: dict[str, Any] | None

    def artifact(self) -> tuple[str, str]:
        """(artifact_uri, artifact_sha256); a version without an artifact is an error."""
        if self.artifact_uri is None or self.artifact_sha256 is None:
            raise ValueError(f"model version {self.version!r} has no artifact")
        return self.artifact_uri, self.artifact_sha256


_COLUMNS = "version, status, preset, artifact_uri, artifact_sha256, config, metrics, gate"


def new_version_id(now: datetime, salt: str) -> str:
    """``m20261122T221500-3fa2c1``: sortable by time, unique by a short hash of ``salt``."""
    short = hashlib.sha256(salt.encode()).hexdigest()[:6]
    return f"m{now.astimezone(UTC):%Y%m%dT%H%M%S}-{short}"


def register_candidate(
    engine: Engine,
    *,
    version: str,
    preset: str,
    config: dict[str, Any],
    metrics: dict[str, Any],
    artifact_uri: str,
    artifact_sha256: str,
    data_window: tuple[datetime | None, datetime | None] = (None, None),
    counts: dict[str, int] | None = None,
    run_id: str | None = None,
) -> None:
    """Record a trained model as a candidate (before the gate has spoken)."""
    counts = counts or {}
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "insert into fnd.model_versions (version, status, preset, config, metrics, "
                "artifact_uri, artifact_sha256, data_window_start, data_window_end, "
                "n_train_rows, n_val_rows, n_test_rows, training_run_id) values (:version, "
                "'candidate', :preset, cast(:config as jsonb), cast(:metrics as jsonb), :uri, "
                ":sha, :start, :end, :n_train, :n_val, :n_test, :run_id)"
            ),
            {
                "version": version,
                "preset": preset,
                "config": json.dumps(config),
                "metrics": json.dumps(metrics),
                "uri": artifact_uri,
                "sha": artifact_sha256,
                "start": data_window[0],
                "end": data_window[1],
                "n_train": counts.get("train"),
                "n_val": counts.get("val"),
                "n_test": counts.get("test"),
                "run_id": run_id,
            },
        )


def get_version(engine: Engine, version: str) -> ModelVersion:
    """One version by id; a clear error when it does not exist."""
    with engine.connect() as conn:
        row = conn.execute(
            sa.text(f"select {_COLUMNS} from fnd.model_versions where version = :v"),
            {"v": version},
        ).one_or_none()
    if row is None:
        raise LookupError(f"model version {version!r} is not in fnd.model_versions")
    return ModelVersion(*row)


def current_champion(engine: Engine) -> ModelVersion | None:
    """The champion, or None before the first promotion."""
    with engine.connect() as conn:
        row = conn.execute(
            sa.text(f"select {_COLUMNS} from fnd.model_versions where status = 'champion'")
        ).one_or_none()
    return None if row is None else ModelVersion(*row)


def promote(engine: Engine, version: str, gate: dict[str, Any]) -> str | None:
    """Make ``version`` the champion, retiring the previous one; returns the retired version."""
    with engine.begin() as conn:
        status = _status_for_update(conn, version)
        if status == "champion":
            return None
        if status != "candidate":
            raise ValueError(f"model version {version} is {status}; only a candidate is promoted")
        retired = _retire_champion(conn)
        conn.execute(
            sa.text(
                "update fnd.model_versions set status = 'champion', promoted_at = now(), "
                "gate = cast(:gate as jsonb), forced_by = :forced_by where version = :v"
            ),
            {"v": version, "gate": json.dumps(gate), "forced_by": gate.get("forced_by")},
        )
    return retired


def reject(engine: Engine, version: str, gate: dict[str, Any]) -> None:
    """Mark a candidate rejected, keeping the gate's reasons."""
    with engine.begin() as conn:
        updated = conn.execute(
            sa.text(
                "update fnd.model_versions set status = 'rejected', gate = cast(:gate as jsonb) "
                "where version = :v and status = 'candidate'"
            ),
            {"v": version, "gate": json.dumps(gate)},
        ).rowcount
    if updated != 1:
        raise ValueError(f"model version {version} is not a candidate: cannot reject it")


def retire(engine: Engine, version: str, *, by: str, reason: str) -> None:
    """Take the champion out of service by hand (it scores nothing more); audited.

    After this there is no champion until a promotion or a rollback: scoring says so.
    """
    with engine.begin() as conn:
        status = _status_for_update(conn, version)
        if status != "champion":
            raise ValueError(f"model version {version} is {status}; only the champion is retired")
        conn.execute(
            sa.text(
                "update fnd.model_versions set status = 'retired', retired_at = now(), "
                "audit = audit || cast(:event as jsonb) where version = :v"
            ),
            {"v": version, "event": _event("retire", by, reason, version)},
        )


def rollback(engine: Engine, version: str, *, by: str, reason: str) -> str | None:
    """Make a former champion (status ``retired``) the champion again; audited.

    The caller checks first that its artifact still loads. Returns the champion it replaced.
    """
    with engine.begin() as conn:
        status = _status_for_update(conn, version)
        if (
            status != "retired"
            or not conn.execute(
                sa.text(
                    "select promoted_at is not null from fnd.model_versions where version = :v"
                ),
                {"v": version},
            ).scalar_one()
        ):
            raise ValueError(
                f"model version {version} is {status}; only a former champion (retired) can be "
                "rolled back to: a candidate goes through the gate (or --force-promote)"
            )
        before = _retire_champion(conn)
        conn.execute(
            sa.text(
                "update fnd.model_versions set status = 'champion', promoted_at = now(), "
                "retired_at = null, audit = audit || cast(:event as jsonb) where version = :v"
            ),
            {"v": version, "event": _event("rollback", by, reason, before)},
        )
    return before


def _retire_champion(conn: Connection) -> str | None:
    """Retire the current champion, if any (inside the caller's transaction); its version."""
    return conn.execute(
        sa.text(
            "update fnd.model_versions set status = 'retired', retired_at = now() "
            "where status = 'champion' returning version"
        )
    ).scalar_one_or_none()


def _status_for_update(conn: Connection, version: str) -> str:
    status = conn.execute(
        sa.text("select status from fnd.model_versions where version = :v for update"),
        {"v": version},
    ).scalar_one_or_none()
    if status is None:
        raise LookupError(f"model version {version!r} is not in fnd.model_versions")
    return status


def _event(action: str, by: str, reason: str, champion_before: str | None) -> str:
    return json.dumps(
        [
            {
                "action": action,
                "by": by,
                "at": datetime.now(UTC).isoformat(),
                "reason": reason,
                "champion_before": champion_before,
            }
        ]
    )
