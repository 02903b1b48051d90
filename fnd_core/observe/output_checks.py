"""GX expectations on the model's outputs: the ``model_outputs`` suite over one run's verdicts.

Drift in the inputs is measured by the domain classifiers of :mod:`fnd_core.observe.drift`; what the
champion *says* about the posts is checked here, as a Great Expectations suite, so that it is
recorded like every other validation (``fnd.validation_runs``, a Data Docs page, the Data
quality page): the predicted fake share against the training prior, the share of undecided
scores, and the score distribution against the champion's out-of-fold scores on its training
snapshot (KL divergence over ten bins, ``metrics.score_histogram``).

The suite's thresholds come from the champion and the settings (:func:`parameters`); each
failed expectation becomes a drift reason in words (:func:`reasons`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from fnd_core.resources import EXPECTATIONS_DIR

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from fnd_core.ingest.quality import ValidationSummary
    from fnd_core.observe.drift_policy import DriftPolicy
    from fnd_core.settings import Settings

SUITE = "model_outputs"
MAX_ROWS = 100_000  # verdicts validated per run at most (a fixed sample by a hash of the id)


def parameters(
    policy: DriftPolicy, train_fake_share: float | None, score_histogram: dict | None
) -> dict[str, Any]:
    """The suite's thresholds for one champion: its prior ± the tolerance, the undecided
    share, and its out-of-fold score histogram (none recorded: the divergence is only shown)."""
    params: dict[str, Any] = {"max_undecided_share": policy.undecided_share}
    if train_fake_share is not None:
        tolerance = policy.prior_tolerance
        params["min_fake_share"] = round(max(0.0, train_fake_share - tolerance), 4)
        params["max_fake_share"] = round(min(1.0, train_fake_share + tolerance), 4)
    if score_histogram:
        params["score_partition"] = score_histogram
        params["max_score_kl"] = policy.max_score_kl
    return params


def validate(
    engine: Engine,
    settings: Settings,
    *,
    subject_sql: str,
    subject: str,
    batch_name: str,
    model_version: str,
    threshold: float,
    band: float,
    params: dict[str, Any],
) -> ValidationSummary | None:
    """Run the suite on the verdicts of ``model_version`` for the posts ``subject_sql`` selects
    (a condition on ``p``, ``fnd.posts``, bound to ``:subject``); None when there are none."""
    import pandas as pd

    from fnd_core.ingest.quality import validate_frame

    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "select pr.post_id, pr.p_fake, pr.label from fnd.predictions pr "
                "join fnd.posts p using (post_id) "
                f"where pr.model_version = :v and {subject_sql} "
                "order by md5(pr.post_id) limit :n"
            ),
            {"v": model_version, "subject": subject, "n": MAX_ROWS},
        ).all()
    if not rows:
        return None
    frame = pd.DataFrame(rows, columns=["post_id", "p_fake", "label"])
    frame["is_fake"] = (frame["label"] == "fake").astype(int)
    frame["undecided"] = ((frame["p_fake"] - threshold).abs() < band).astype(int)
    return validate_frame(
        frame,
        SUITE,
        expectations_dir=EXPECTATIONS_DIR,
        data_docs_dir=settings.data_docs,
        batch_name=batch_name,
        parameters=params,
        publish_to=settings.data_docs_uri,
    )


def reasons(summary: ValidationSummary, *, band: float) -> list[str]:
    """Each failed expectation of the suite as an operator reads it."""
    out = []
    params = summary.parameters
    for outcome in summary.failed:
        observed, kind = outcome.observed_value, outcome.expectation_type
        if outcome.error:
            out.append(f"model outputs: {kind}({outcome.column}) could not run: {outcome.error}")
        elif kind == "expect_column_mean_to_be_between" and outcome.column == "is_fake":
            out.append(
                f"predicted fake share {observed:.2f} outside {params['min_fake_share']:.2f}–"
                f"{params['max_fake_share']:.2f} (the training fake share ± the tolerance)"
            )
        elif kind == "expect_column_mean_to_be_between" and outcome.column == "undecided":
            out.append(
                f"{observed:.0%} of scores within {band} of the threshold "
                f"(> {params['max_undecided_share']:.0%})"
            )
        elif kind == "expect_column_kl_divergence_to_be_less_than":
            out.append(
                f"score distribution differs from the champion's out-of-fold scores "
                f"(KL divergence {_number(observed)} > {params['max_score_kl']})"
            )
        else:
            out.append(f"model outputs: {kind}({outcome.column or ''}) observed {observed}")
    return out


def _number(value: Any) -> str:
    return f"{value:.2f}" if isinstance(value, int | float) else str(value)


def estimated_fake_share(
    engine: Engine, subject_sql: str, subject: str, version: str
) -> dict[str, Any]:
    """The fake share of the subject's posts, estimated from the calibrated P(fake) (Saerens
    EM; :mod:`fnd_core.model.calibration`): the incoming mix under label shift."""
    import numpy as np

    from fnd_core.model.calibration import estimate_fake_share

    with engine.connect() as conn:
        p = conn.execute(sa.text(
            "select pr.p_fake from fnd.predictions pr join fnd.posts p using (post_id) "
            f"where pr.model_version = :v and {subject_sql} "
            "order by md5(pr.post_id) limit :cap"
        ), {"v": version, "subject": str(subject),
            "cap": MAX_ROWS}).scalars().all()  # fmt: skip
    share, iterations = estimate_fake_share(np.array(p, dtype=float))
    return {"estimated_fake_share": round(share, 4), "prior_em_iterations": iterations,
            "prior_em_posts": len(p)}  # fmt: skip
