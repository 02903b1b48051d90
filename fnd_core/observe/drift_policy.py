"""When a drift report is flagged: the thresholds, from ``FND_DRIFT_*``.

Its own module because both the input-drift check (:mod:`fnd_core.observe.drift`) and the
model-output suite (:mod:`fnd_core.observe.output_checks`) read it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from fnd_core.settings import default

if TYPE_CHECKING:
    from fnd_core.settings import Settings


@dataclass(frozen=True)
class DriftPolicy:
    """When a report is flagged (each threshold from ``FND_DRIFT_*``)."""

    auc_threshold: float = default("drift_auc_threshold")
    prior_tolerance: float = default("drift_prior_tolerance")
    undecided_share: float = default("drift_undecided_share")
    max_score_kl: float = default("drift_max_score_kl")
    prior_min_posts: int = default("prior_min_posts")  # fewer: the fake share is not estimated

    @classmethod
    def from_settings(cls, settings: Settings) -> DriftPolicy:
        return cls(settings.drift_auc_threshold, settings.drift_prior_tolerance,
                   settings.drift_undecided_share, settings.drift_max_score_kl,
                   settings.prior_min_posts)  # fmt: skip
