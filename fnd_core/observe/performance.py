"""Performance after the fact: a label-free weekly estimate, realized figures, and the alert.

The gate estimates a version's balanced accuracy before promotion; fact-checkers' labels arrive
days after the verdicts. Two figures follow a version in production, per UTC week of its first
verdicts (``fnd.predictions.first_*``, kept through rescoring):

- **estimated** (:func:`estimate_weeks`, stored in ``fnd.performance_estimates``): from the
  calibrated ``p_fake`` alone, in the manner of NannyML's confidence-based performance
  estimation (CBPE). The week's fake share is estimated first (Saerens EM,
  :func:`fnd_core.model.calibration.estimate_fake_share`), each balanced-prior ``p_fake`` is
  re-weighted to it, and the expected confusion matrix of the verdicts follows: a verdict
  "fake" with probability ``q`` counts ``q`` true positive and ``1 - q`` false positive. It
  assumes label shift only (each class looks as it did in training), so it is blind to the
  posts of a new kind of event the model gets wrong with confidence: the realized figure is
  the judge.
- **realized** (SQL view ``fnd.realized_performance``): the verdicts against the labels that
  arrived after them.

:func:`check_realized` compares the champion's realized balanced accuracy (the lower end of its
95 % interval, once the week holds enough labels of each class) with the gate's post-counted
estimate, and records an alert once per version and week when it falls short by more than
``FND_REALIZED_ALERT_MARGIN``.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import sqlalchemy as sa

from fnd_core.model.calibration import SHARE_FLOOR, estimate_fake_share

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from fnd_core.settings import Settings

log = logging.getLogger(__name__)
Z_95 = 1.959964  # two-sided 95 % normal quantile
# A verdict given while no label of its post had been received: the ones realized figures can
# count, so the ones the estimate covers (a champion rescoring its own training posts would
# otherwise fill the week with posts it was fitted to).
_BLIND = ("not exists (select 1 from fnd.labels l where l.post_id = pr.post_id "
          "and l.received_at <= pr.first_scored_at)")  # fmt: skip


@dataclass(frozen=True)
class ExpectedPerformance:
    """What the verdicts should score if ``p_fake`` is right about the week's posts."""

    n_verdicts: int
    estimated_fake_share: float
    estimated_balanced_accuracy: float | None
    estimated_fake_precision: float | None
    estimated_fake_recall: float | None


def expected_performance(p_fake: np.ndarray, said_fake: np.ndarray) -> ExpectedPerformance:
    """CBPE on balanced-prior probabilities ``p_fake`` and the verdicts given (``said_fake``).

    The fake share is estimated, held within [SHARE_FLOOR, 1 - SHARE_FLOOR] (a share of 0 would
    make every post certainly real: nothing left to estimate), and each ``p`` re-weighted to it.
    """
    p = np.clip(np.asarray(p_fake, dtype=np.float64), 1e-6, 1 - 1e-6)
    said = np.asarray(said_fake, dtype=bool)
    share = min(max(estimate_fake_share(p)[0], SHARE_FLOOR), 1 - SHARE_FLOOR)
    q = share * p / (share * p + (1 - share) * (1 - p))
    tp, fp = float(q[said].sum()), float((1 - q)[said].sum())
    fn, tn = float(q[~said].sum()), float((1 - q)[~said].sum())
    recall = tp / (tp + fn) if tp + fn > 0 else None
    specificity = tn / (tn + fp) if tn + fp > 0 else None
    balanced = None if recall is None or specificity is None else (recall + specificity) / 2
    return ExpectedPerformance(
        n_verdicts=int(p.size),
        estimated_fake_share=round(share, 6),
        estimated_balanced_accuracy=_rounded(balanced),
        estimated_fake_precision=_rounded(tp / (tp + fp) if said.any() else None),
        estimated_fake_recall=_rounded(recall),
    )


def estimate_weeks(engine: Engine, *, model_version: str | None = None) -> list[dict[str, Any]]:
    """Estimate (again) every week whose first verdicts changed since it was last estimated;
    returns the rows written. Cheap when nothing changed: one grouped count. Verdicts given
    while a label of the post was known (hindsight) are left out, as realized figures do."""
    with engine.connect() as conn:
        stale = conn.execute(
            sa.text(
                "select v.model_version, v.week, v.n from ("
                "  select model_version, (date_trunc('week', first_scored_at at time zone "
                f"  'UTC'))::date as week, count(*) as n from fnd.predictions pr where {_BLIND} "
                "  and (cast(:v as text) is null or model_version = :v) group by 1, 2) v "
                "left join fnd.performance_estimates e "
                "  on e.model_version = v.model_version and e.week = v.week "
                "where e.n_verdicts is distinct from v.n order by 1, 2"
            ),
            {"v": model_version},
        ).all()
    written = []
    for version, week, _ in stale:
        with engine.begin() as conn:
            rows = conn.execute(
                sa.text(
                    "select first_p_fake, first_label = 'fake' from fnd.predictions pr "
                    "where model_version = :v and (date_trunc('week', first_scored_at at "
                    f"time zone 'UTC'))::date = :w and {_BLIND}"
                ),
                {"v": version, "w": week},
            ).all()
            if not rows:
                continue
            expected = expected_performance(
                np.array([r[0] for r in rows]), np.array([r[1] for r in rows])
            )
            values = {"model_version": version, "week": week, **asdict(expected)}
            conn.execute(
                sa.text(
                    "insert into fnd.performance_estimates (model_version, week, n_verdicts, "
                    "estimated_fake_share, estimated_balanced_accuracy, estimated_fake_precision, "
                    "estimated_fake_recall) values (:model_version, :week, :n_verdicts, "
                    ":estimated_fake_share, :estimated_balanced_accuracy, "
                    ":estimated_fake_precision, :estimated_fake_recall) "
                    "on conflict (model_version, week) do update set "
                    "n_verdicts = excluded.n_verdicts, "
                    "estimated_fake_share = excluded.estimated_fake_share, "
                    "estimated_balanced_accuracy = excluded.estimated_balanced_accuracy, "
                    "estimated_fake_precision = excluded.estimated_fake_precision, "
                    "estimated_fake_recall = excluded.estimated_fake_recall, computed_at = now()"
                ),
                values,
            )
        log.info("%s, week of %s: %d verdicts, estimated balanced accuracy %s (fake share %.3f)",
                 version, week, expected.n_verdicts, expected.estimated_balanced_accuracy,
                 expected.estimated_fake_share)  # fmt: skip
        written.append({**values, "week": week.isoformat()})
    return written


def realized(engine: Engine, *, model_version: str | None = None) -> list[dict[str, Any]]:
    """Rows of ``fnd.realized_performance`` (one version, or all), as plain dicts."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "select * from fnd.realized_performance "
                "where cast(:v as text) is null or model_version = :v order by model_version, week"
            ),
            {"v": model_version},
        ).mappings()
        return [{k: _plain(v) for k, v in row.items()} for row in rows]


def balanced_accuracy_interval(tp: int, fn: int, tn: int, fp: int) -> tuple[float, float, float]:
    """(balanced accuracy, lower, upper): 95 % normal approximation, each class's recall a
    binomial share of its own labelled posts."""
    n_fake, n_real = tp + fn, tn + fp
    if not n_fake or not n_real:
        raise ValueError("balanced accuracy needs labelled posts of both classes")
    r1, r0 = tp / n_fake, tn / n_real
    ba = (r1 + r0) / 2
    half = Z_95 * math.sqrt(r1 * (1 - r1) / n_fake + r0 * (1 - r0) / n_real) / 2
    return ba, ba - half, ba + half


@dataclass(frozen=True)
class RealizedAlert:
    """The champion's realized balanced accuracy fell below its gate's figure."""

    model_version: str
    week: str
    realized_balanced_accuracy: float
    lower_bound: float
    gate_estimate_by_post: float
    n_labelled: int

    @property
    def title(self) -> str:
        return (f"fnd: {self.model_version} realized balanced accuracy "
                f"{self.realized_balanced_accuracy:.3f} in the week of {self.week}")  # fmt: skip

    @property
    def lines(self) -> list[str]:
        return [
            f"realized balanced accuracy {self.realized_balanced_accuracy:.3f} over "
            f"{self.n_labelled} labelled verdicts (95% lower bound {self.lower_bound:.3f})",
            f"the gate estimated {self.gate_estimate_by_post:.3f} (counted by post) at promotion",
            "see fnd.realized_performance; with FND_DRIFT_TRIGGERS_RETRAIN, retraining follows",
        ]

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "title": self.title, "lines": self.lines}


def check_realized(
    engine: Engine, settings: Settings, *, run_id: str = "cli"
) -> list[RealizedAlert]:
    """New alerts: the champion's weeks whose realized balanced accuracy (lower bound of its
    95 % interval) is more than ``FND_REALIZED_ALERT_MARGIN`` below the gate's post-counted
    estimate. Each (version, week) alerts once (``fnd.performance_alerts``)."""
    from fnd_core.ingest.label_store import sync_db_settings
    from fnd_core.pipeline.registry import current_champion

    with engine.begin() as conn:
        sync_db_settings(conn, settings)
    champion = current_champion(engine)
    if champion is None:
        return []
    alerts = []
    for row in realized(engine, model_version=champion.version):
        gate = row["gate_estimate_by_post"]
        if row["balanced_accuracy"] is None or gate is None:
            continue
        ba, lower, _ = balanced_accuracy_interval(row["tp"], row["fn"], row["tn"], row["fp"])
        if lower >= gate - settings.realized_alert_margin:
            continue
        alert = RealizedAlert(champion.version, row["week"], round(ba, 4), round(lower, 4),
                              float(gate), row["n_labelled"])  # fmt: skip
        with engine.begin() as conn:
            new = conn.execute(
                sa.text(
                    "insert into fnd.performance_alerts (model_version, week, "
                    "realized_balanced_accuracy, lower_bound, gate_estimate_by_post, n_labelled, "
                    "run_id) values (:v, :w, :ba, :lo, :g, :n, :r) "
                    "on conflict (model_version, week) do nothing returning 1"
                ),
                {"v": alert.model_version, "w": alert.week, "ba": alert.realized_balanced_accuracy,
                 "lo": alert.lower_bound, "g": alert.gate_estimate_by_post,
                 "n": alert.n_labelled, "r": run_id},
            ).first()  # fmt: skip
        if new:
            log.warning("%s: %s", alert.title, "; ".join(alert.lines))
            alerts.append(alert)
    return alerts


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(float(value), 6)


def _plain(value: Any) -> Any:
    """JSON-able: dates as ISO text, numerics as floats."""
    from datetime import date, datetime
    from decimal import Decimal

    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value
