"""Drift: how far a landed batch or a scoring run is from what the champion learnt from.

A model is only as good as the resemblance between today's posts and its training snapshot.
Three kinds of evidence, each cheap because the frozen encoders' features are cached:

- **prior shift**: the share of posts the champion calls fake against the fake share of its
  training snapshot (a 67 %-fake training set meeting 27 %-fake events is how fnd first failed
  on real tweets);
- **input drift**, image and text apart: a domain classifier (logistic regression on the frozen
  encoders' features, cross-validated) telling the snapshot's distinct pictures (and texts) from
  the current ones; its ROC AUC is 0.5 when they cannot be told apart. Also reported: the
  share of current pictures never seen in the snapshot (reposts share pictures; a new event
  brings new ones);
- **output checks**: the GX suite ``model_outputs`` over the champion's verdicts
  (:mod:`fnd_core.observe.output_checks`): predicted fake share against the training prior,
  the share of undecided scores (within ``UNDECIDED_BAND`` of the threshold), and the score
  distribution against the champion's out-of-fold scores. Recorded as a validation run with
  Data Docs.

:func:`measure` computes a :class:`DriftReport`; :func:`record` stores it in
``fnd.drift_reports``. Flags use the thresholds of :class:`DriftPolicy` (settings
``FND_DRIFT_*``), chosen by measurement (README, "Drift").
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from fnd_core.observe.drift_policy import DriftPolicy

if TYPE_CHECKING:
    import numpy as np
    from sqlalchemy.engine import Engine

    from fnd_core.model.examples import PostExample
    from fnd_core.model.network import FakeNewsModel
    from fnd_core.pipeline.registry import ModelVersion
    from fnd_core.settings import Settings

log = logging.getLogger(__name__)

UNDECIDED_BAND = 0.1  # |p_fake - threshold| below this counts as undecided
SAMPLE = 1000  # posts per side fed to the domain classifier, at most
MIN_POSTS = 30  # fewer current posts than this: no domain classifier (too noisy to flag)
MIN_DISTINCT = 10  # fewer distinct pictures (or texts) than this: no AUC for that modality
NOISE_Z = 4.0  # see auc_bar
KINDS = ("batch", "scoring_run")


@dataclass
class DriftReport:
    """One batch's or one scoring run's drift against the champion's training snapshot."""

    kind: str  # batch | scoring_run
    subject: str  # the batch id or the run id
    model_version: str
    n_posts: int
    metrics: dict[str, Any] = field(default_factory=dict)
    reasons: list[str] = field(default_factory=list)
    validation: dict[str, Any] | None = None  # the model_outputs GX run, stored by record()

    @property
    def flagged(self) -> bool:
        return bool(self.reasons)

    def to_json(self) -> dict[str, Any]:
        """Small enough for an XCom: the GX run is summed up in ``metrics.outputs_check``."""
        return {**asdict(self), "validation": None, "flagged": self.flagged}

    def summary(self) -> str:
        head = f"drift of {self.kind} {self.subject} against {self.model_version}"
        if not self.flagged:
            return f"{head}: nothing flagged ({self.n_posts} posts)"
        return f"{head}: FLAGGED — {'; '.join(self.reasons)}"


def measure(
    engine: Engine,
    settings: Settings,
    *,
    kind: str,
    subject: str,
    model_version: str | None = None,
    policy: DriftPolicy | None = None,
) -> DriftReport | None:
    """Drift of a batch (``kind="batch"``, ``subject`` its batch id) or a scoring run
    (``"scoring_run"``, its run id) against a model's training snapshot (the champion by
    default). None when there is no model yet or the subject has no posts."""
    from fnd_core.pipeline import registry

    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    version = (registry.get_version(engine, model_version) if model_version
               else registry.current_champion(engine))  # fmt: skip
    if version is None:
        return None
    policy = policy or DriftPolicy.from_settings(settings)
    as_of = version.config.get("snapshot_as_of")
    current = _current_posts(engine, kind, subject)
    if not current:
        return None
    report = DriftReport(kind, str(subject), version.version, n_posts=_count(engine, kind, subject))
    reference = _reference_posts(engine, as_of, kind, subject)
    report.metrics.update(_outputs(engine, kind, subject, version.version, version.config))
    report.metrics["train_fake_share"] = _train_prior(engine, as_of)
    if report.metrics["n_scored"]:
        _check_outputs(engine, settings, report, version, policy)
    if report.metrics["n_scored"] >= policy.prior_min_posts:
        from fnd_core.observe import output_checks

        report.metrics.update(
            output_checks.estimated_fake_share(engine, _SUBJECT[kind], subject, version.version)
        )
    report.metrics["unseen_image_share"] = _unseen_image_share(engine, kind, subject, as_of)
    if len(current) >= MIN_POSTS and len(reference) >= MIN_POSTS:
        report.metrics.update(_domain_aucs(version, settings, reference, current))
    _judge(report, policy)
    log.info("%s", report.summary())
    return report


def auc_bar(policy: DriftPolicy, n_reference: int, n_current: int) -> float:
    """The AUC a domain classifier must pass to flag drift: the policy's threshold, raised
    for small samples to ``NOISE_Z`` standard errors of the AUC of two alike samples
    (Hanley & McNeil), so that a 60-post batch is not flagged on noise."""
    se = math.sqrt((n_reference + n_current + 1) / (12 * n_reference * n_current))
    return max(policy.auc_threshold, 0.5 + NOISE_Z * se)


def _judge(report: DriftReport, policy: DriftPolicy) -> None:
    """Flag input drift and a moved fake share (the output checks add their reasons in
    :func:`_check_outputs`)."""
    m = report.metrics
    estimated, trained = m.get("estimated_fake_share"), m.get("train_fake_share")
    if (
        estimated is not None
        and trained is not None
        and abs(estimated - trained) > policy.prior_tolerance
    ):
        report.reasons.append(
            f"the estimated fake share of these posts ({estimated:.0%}) moved from the "
            f"training snapshot's ({trained:.0%}) by more than {policy.prior_tolerance:.0%}"
        )
    for modality in ("image", "text"):
        auc, n = m.get(f"{modality}_auc"), m.get(f"n_{modality}s_compared")
        if auc is None or not n:
            continue
        bar = round(auc_bar(policy, n, n), 4)
        m[f"{modality}_auc_bar"] = bar
        if auc > bar:
            report.reasons.append(
                f"{modality} inputs differ from the training snapshot (domain classifier ROC "
                f"AUC {auc:.3f} > {bar:.3f})"
            )


# The posts compared ----------------------------------------------------------------------

_SUBJECT = {
    "batch": "p.batch_id = cast(:subject as bigint)",
    "scoring_run": "exists (select 1 from fnd.predictions pr where pr.post_id = p.post_id "
    "and pr.run_id = :subject)",
}
_POST_COLUMNS = "p.post_id, p.text, p.image_uri, p.image_sha256, p.label, 'test'"


def _current_posts(engine: Engine, kind: str, subject: str) -> list[PostExample]:
    sql = (f"select {_POST_COLUMNS} from fnd.posts p where {_SUBJECT[kind]} "
           "order by md5(p.post_id) limit :n")  # fmt: skip
    return _examples(engine, sql, {"subject": str(subject)})


def _reference_posts(engine: Engine, as_of: str | None, kind: str, subject: str) -> list:
    """A fixed pseudo-random sample (by a hash of the id) of the snapshot's labelled posts,
    without the subject's own: a post on both sides would make the two look alike."""
    sql = (f"select {_POST_COLUMNS} from fnd.posts p where p.label is not null "
           "and (cast(:as_of as timestamptz) is null or p.ingested_at <= :as_of) "
           f"and not ({_SUBJECT[kind]}) order by md5(p.post_id) limit :n")  # fmt: skip
    return _examples(engine, sql, {"as_of": as_of, "subject": str(subject)})


def _examples(engine: Engine, sql: str, params: dict[str, Any]) -> list[PostExample]:
    from fnd_core.model.examples import PostExample

    with engine.connect() as conn:
        rows = conn.execute(sa.text(sql), {**params, "n": SAMPLE}).all()
    return [PostExample(*row) for row in rows]


def _count(engine: Engine, kind: str, subject: str) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.text(f"select count(*) from fnd.posts p where {_SUBJECT[kind]}"),
                            {"subject": str(subject)}).scalar_one()  # fmt: skip


def _train_prior(engine: Engine, as_of: str | None) -> float | None:
    with engine.connect() as conn:
        return conn.execute(sa.text(
            "select avg(label)::float from fnd.posts where label is not null "
            "and (cast(:as_of as timestamptz) is null or ingested_at <= :as_of)"
        ), {"as_of": as_of}).scalar_one()  # fmt: skip


def _unseen_image_share(engine: Engine, kind: str, subject: str, as_of: str | None) -> float:
    with engine.connect() as conn:
        return conn.execute(sa.text(
            f"select avg(case when exists (select 1 from fnd.posts t where t.label is not null "
            "and (cast(:as_of as timestamptz) is null or t.ingested_at <= :as_of) "
            "and t.image_sha256 = p.image_sha256) then 0 else 1 end)"
            f"::float from fnd.posts p where {_SUBJECT[kind]}"
        ), {"as_of": as_of, "subject": str(subject)}).scalar_one()  # fmt: skip


def _outputs(engine: Engine, kind: str, subject: str, version: str, config: dict) -> dict:
    """The model's verdicts on the subject's posts: fake share, undecided share, quantiles."""
    threshold = float(config.get("threshold", 0.5))
    with engine.connect() as conn:
        row = conn.execute(sa.text(
            "select count(*), avg((pr.label = 'fake')::int)::float, "
            "avg((abs(pr.p_fake - :t) < :band)::int)::float, "
            "percentile_cont(array[0.1, 0.5, 0.9]) within group (order by pr.p_fake) "
            f"from fnd.predictions pr join fnd.posts p using (post_id) "
            f"where pr.model_version = :v and {_SUBJECT[kind]}"
        ), {"t": threshold, "band": UNDECIDED_BAND, "v": version,
            "subject": str(subject)}).one()  # fmt: skip
    n, fake, undecided, quantiles = row
    if not n:
        return {"n_scored": 0}
    return {
        "n_scored": n,
        "predicted_fake_share": fake,
        "undecided_share": undecided,
        "p_fake_quantiles": [round(q, 4) for q in quantiles],
        "threshold": threshold,
    }


def _check_outputs(
    engine: Engine,
    settings: Settings,
    report: DriftReport,
    version: ModelVersion,
    policy: DriftPolicy,
) -> None:
    """Run the ``model_outputs`` suite on the subject's verdicts; failures become reasons."""
    from fnd_core.observe import output_checks

    m = report.metrics
    params = output_checks.parameters(
        policy, m["train_fake_share"], version.metrics.get("score_histogram")
    )
    summary = output_checks.validate(
        engine, settings, subject_sql=_SUBJECT[report.kind], subject=report.subject,
        batch_name=f"{report.kind}-{report.subject}", model_version=version.version,
        threshold=m["threshold"], band=UNDECIDED_BAND, params=params,
    )  # fmt: skip
    if summary is None:
        return
    report.validation = summary.to_json()
    report.reasons.extend(output_checks.reasons(summary, band=UNDECIDED_BAND))
    kl = next((r.observed_value for r in summary.results
               if r.expectation_type.startswith("expect_column_kl")), None)  # fmt: skip
    m["score_kl"] = round(float(kl), 4) if isinstance(kl, int | float) else None
    m["outputs_check"] = {
        "suite": summary.suite,
        "success": summary.success,
        "failed": [f"{r.expectation_type}({r.column or ''})" for r in summary.failed],
        "data_docs_path": report.validation["data_docs_path"],
    }


# Input drift: a domain classifier on the frozen encoders' features ------------------------


def _domain_aucs(
    version: ModelVersion,
    settings: Settings,
    reference: list[PostExample],
    current: list[PostExample],
) -> dict[str, Any]:
    """Cross-validated ROC AUC of telling reference from current items, per modality.

    Items are *distinct* pictures (by sha256) and *distinct* texts (normalised as the leak
    groups are): a picture reposted 300 times is one item, and one found on both sides is
    left out. Counting posts would let the classifier learn which pictures are new — every new
    story has new pictures — instead of whether they look different.
    """
    from fnd_core.model.artifacts import load_model
    from fnd_core.model.char_ngrams import CharNgramModel
    from fnd_core.model.features.encoding import encode_examples, encode_options
    from fnd_core.model.splits.grouping import normalise_text
    from fnd_core.pipeline.scoring import inference_model

    loaded = inference_model(*version.artifact(), "cpu")  # the one scoring just used, if here
    if getattr(loaded.model, "released_encoders", None):  # it scored in int8: float needed
        loaded = load_model(*version.artifact(), device="cpu", for_inference=True)
    encoders = (  # a char n-gram model has no encoders
        _default_encoders(settings) if isinstance(loaded.model, CharNgramModel) else loaded.model
    )
    # Each side encoded once (cached features, mostly): each modality then picks its rows.
    # the float path, int8 or not: the reference's features were cached at training in it
    options = encode_options(settings, float_path=True)
    ref_features = encode_examples(encoders, reference, **options)
    cur_features = encode_examples(encoders, current, **options)
    keys = {"image": lambda ex: ex.image_sha256 or ex.image_uri,
            "text": lambda ex: normalise_text(ex.text)}  # fmt: skip
    out: dict[str, Any] = {}
    for modality, key in keys.items():
        ref, cur = _distinct_rows(reference, key), _distinct_rows(current, key)
        # An item on both sides is no evidence either way (and identical rows labelled both
        # ways make a cross-validated classifier score below 0.5): compare the rest.
        shared = ref.keys() & cur.keys()
        ref_rows = [row for k, row in ref.items() if k not in shared]
        cur_rows = [row for k, row in cur.items() if k not in shared]
        n = min(len(ref_rows), len(cur_rows))
        out[f"n_{modality}s_compared"] = n
        a, b = getattr(ref_features, modality), getattr(cur_features, modality)
        if n >= MIN_DISTINCT and a is not None and b is not None:
            auc = domain_auc(a[ref_rows[:n]].numpy(), b[cur_rows[:n]].numpy())
            out[f"{modality}_auc"] = round(auc, 4)
    return out


def _default_encoders(settings: Settings) -> FakeNewsModel:
    """The deployment preset's frozen encoders: what drift reads when the model has none of
    its own (a char n-gram model reads text only, yet pictures can drift)."""
    from fnd_core.model.config import ModelConfig
    from fnd_core.model.network import build_model

    config = ModelConfig.for_preset(
        settings.model_preset, image_size=settings.image_size, max_tokens=settings.max_tokens
    )
    return build_model(config).eval()


def _distinct_rows(
    examples: list[PostExample], key: Callable[[PostExample], Any]
) -> dict[Any, int]:
    """Key -> the row of its first example, in order."""
    rows: dict[Any, int] = {}
    for row, example in enumerate(examples):
        rows.setdefault(key(example), row)
    return rows


def domain_auc(reference: np.ndarray, current: np.ndarray, *, folds: int = 5) -> float:
    """ROC AUC of a cross-validated classifier telling ``current`` rows from ``reference`` ones.

    0.5: the two are alike; towards 1: they can be told apart. Features are standardised; the
    classifier is a strongly regularised logistic regression, so a few hundred posts of
    high-dimensional features do not make noise look like drift.
    """
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x = np.concatenate([reference, current]).astype(np.float64)
    y = np.concatenate([np.zeros(len(reference)), np.ones(len(current))])
    model = make_pipeline(StandardScaler(), LogisticRegression(C=0.01, max_iter=2000))
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=0)
    p = cross_val_predict(model, x, y, cv=cv, method="predict_proba")[:, 1]
    return float(roc_auc_score(y, p))


# Storage -----------------------------------------------------------------------------------


def record(engine: Engine, report: DriftReport, run_id: str = "cli") -> int:
    """Store a report in ``fnd.drift_reports`` (and its GX run in ``fnd.validation_runs``, in
    the same transaction); returns its id."""
    import json

    from fnd_core.ingest.quality import record_validation

    with engine.begin() as conn:
        if report.validation is not None:
            record_validation(conn, report.validation, run_id=run_id)
        return conn.execute(sa.text(
            "insert into fnd.drift_reports (kind, subject, model_version, n_posts, metrics, "
            "flagged, reasons, run_id) values (:k, :s, :v, :n, cast(:m as jsonb), :f, "
            "cast(:r as jsonb), :run) returning report_id"
        ), {"k": report.kind, "s": report.subject, "v": report.model_version,
            "n": report.n_posts, "m": json.dumps(report.metrics), "f": report.flagged,
            "r": json.dumps(report.reasons), "run": run_id}).scalar_one()  # fmt: skip


def request_retrain(engine: Engine, report_id: int, *, cooldown_hours: float = 24) -> bool:
    """Mark a flagged report as the one that asks for retraining; False when another report
    already asked for the same model version, or any did in the last ``cooldown_hours``.

    Retraining on the same labelled posts cannot fix drift in unlabelled ones: once per
    champion, and at most once per cooldown, so retrain -> rescore -> drift cannot loop."""
    with engine.begin() as conn:
        return bool(conn.execute(sa.text(
            "update fnd.drift_reports r set retrain_requested = true where report_id = :id "
            "and flagged and not exists (select 1 from fnd.drift_reports o "
            "where o.retrain_requested and (o.model_version = r.model_version "
            "or o.computed_at > now() - make_interval(secs => :cooldown))) returning 1"
        ), {"id": report_id, "cooldown": cooldown_hours * 3600}).first())  # fmt: skip
