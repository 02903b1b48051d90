"""The one settings object of fnd: every knob, its ``FND_*`` variable, default and meaning.

Read from the environment in one place (:meth:`Settings.from_env`); importing it creates no
folder and opens no connection."""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from fnd_core.contracts import GCP_CONN_ID

GATE_METRICS = ("balanced_accuracy", "macro_f1")  # fnd_core.pipeline.gate computes them


def _positive_hours(env: str, hours: float) -> timedelta:
    if not hours > 0:
        raise ValueError(f"{env}={hours!r}: must be a number of hours above 0")
    return timedelta(hours=hours)


def _setting(env: str, default: Any, doc: str) -> Any:
    """Declare a setting: the variable that sets it, its default, and a line for `fnd config`."""
    return field(default=default, metadata={"env": env, "doc": doc})


@dataclass(frozen=True)
class Settings:
    """Effective configuration. Paths that default to ``None`` are derived from ``home``."""

    home: Path = _setting("FND_HOME", Path(".fnd"), "Working folder: embedded DB, store, docs")
    database_url: str | None = _setting(
        "FND_DATABASE_URL", None, "SQLAlchemy URL of fnd's Postgres; unset = embedded pgserver"
    )
    db_read_password: str | None = _setting(
        "FND_DB_READ_PASSWORD",
        None,
        "Password `fnd db upgrade` gives the UI plugin's read-only login fnd_ui; unset: one "
        "generated once and kept in FND_HOME/db_read_password",
    )
    landing_dir: str | None = _setting(
        "FND_LANDING_DIR", None, "Landing zone: local folder or gs://bucket/prefix"
    )
    store_uri: str | None = _setting(
        "FND_STORE", None, "Model + image store: local folder or gs://bucket/prefix"
    )
    data_docs_dir: Path | None = _setting(
        "FND_DATA_DOCS_DIR", None, "Where Great Expectations Data Docs HTML is built"
    )
    data_docs_uri: str | None = _setting(
        "FND_DATA_DOCS_URI",
        None,
        "Where each run's Data Docs page is also published (gs://bucket/prefix) for the plugin "
        "to serve, when workers and the API server share no disk; unset: the local folder",
    )
    gcs_endpoint: str | None = _setting(
        "FND_GCS_ENDPOINT",
        None,
        "GCS API endpoint override (a local emulator); unset: STORAGE_EMULATOR_HOST if set",
    )
    gcp_conn_id: str = _setting(
        "FND_GCP_CONN_ID",
        GCP_CONN_ID,
        "Airflow connection whose credentials every gs:// access and Vertex AI call uses",
    )
    landing_poke_seconds: float = _setting(
        "FND_LANDING_POKE_SECONDS",
        60.0,
        "How often fnd_landing_watch's deferrable sensor lists a gs:// landing zone",
    )
    landing_roots: str = _setting(
        "FND_LANDING_ROOTS",
        "",
        "More folders (comma-separated) that `fnd ingest PATH` and the DAG's path may name",
    )
    landing_settle_seconds: float = _setting(
        "FND_LANDING_SETTLE_SECONDS",
        3,
        "Local landing files changed this recently are re-checked; still changing: skipped",
    )
    ingest_schedule: str = _setting(
        "FND_INGEST_SCHEDULE", "*/10 * * * *", "Cron of the fnd_ingest DAG"
    )
    max_text_chars: int = _setting("FND_MAX_TEXT_CHARS", 5000, "Longest post text accepted")
    max_image_bytes: int = _setting(
        "FND_MAX_IMAGE_BYTES", 50 * 1024 * 1024, "Largest image file read at ingest, in bytes"
    )
    train_max_posts: int = _setting(
        "FND_TRAIN_MAX_POSTS",
        200_000,
        "Retraining uses at most this many labelled posts (the newest): bounds its memory",
    )
    remote_image_hosts: str = _setting(
        "FND_REMOTE_IMAGE_HOSTS",
        "",
        "Hosts http(s) image URLs may be fetched from (comma-separated); empty: none",
    )
    remote_image_timeout_s: float = _setting(
        "FND_REMOTE_IMAGE_TIMEOUT_S",
        10.0,
        "Total time one remote image fetch may take (DNS, connect and every read together)",
    )
    max_landing_bytes: int = _setting(
        "FND_MAX_LANDING_BYTES",
        10 * 1024**3,
        "Largest landing file read, in bytes; a larger one is moved to failed/ unread",
    )
    max_image_pixels: int = _setting(
        "FND_MAX_IMAGE_PIXELS", 40_000_000, "Largest image (w*h) accepted: decompression-bomb guard"
    )
    max_image_decoded_bytes: int = _setting(
        "FND_MAX_IMAGE_DECODED_BYTES",
        96 * 1024 * 1024,
        "Largest decoded picture (pixels x bands x bytes per sample) decoded at ingest; JPEGs "
        "count at the 1/8 scale they decode at",
    )
    image_decode_threads: int = _setting(
        "FND_IMAGE_DECODE_THREADS",
        2,
        "Threads decoding images at ingest (fixed, not per core): memory is at most this "
        "many times FND_MAX_IMAGE_DECODED_BYTES",
    )
    max_row_bytes: int = _setting(
        "FND_MAX_ROW_BYTES",
        16 * 1024 * 1024,
        "Longest landing row (JSONL line, CSV line or field) read; longer: row_too_long",
    )
    quarantine_excerpt_bytes: int = _setting(
        "FND_QUARANTINE_EXCERPT_BYTES",
        4096,
        "Start of a quarantined row kept in fnd.quarantine.raw (the whole row stays in its file)",
    )
    quarantine_fail_share: float = _setting(
        "FND_QUARANTINE_FAIL_SHARE",
        0.5,
        "A file whose quarantined share exceeds this fails as a whole",
    )
    model_preset: str = _setting(
        "FND_MODEL_PRESET", "offline", "Backbones: a preset of fnd_core/model/presets.py"
    )
    train_epochs: int = _setting(
        "FND_TRAIN_EPOCHS",
        40,
        "Most epochs a training run takes (early stopping may end it sooner)",
    )
    image_size: int = _setting("FND_IMAGE_SIZE", 224, "Image side in pixels fed to the encoder")
    max_tokens: int = _setting("FND_MAX_TOKENS", 64, "Text truncated to this many tokens")
    batch_size: int = _setting(
        "FND_BATCH_SIZE", 4, "Image-encoder batch size (4 suits a 2-core CPU; 64+ a GPU)"
    )
    cpu_threads: int = _setting(
        "FND_CPU_THREADS", 0, "Torch CPU threads per task (0: torch's default; 1 on shared CPUs)"
    )
    num_workers: int = _setting(
        "FND_NUM_WORKERS", -1, "DataLoader processes (-1: auto, 0 on CPU, up to 4 with a GPU)"
    )
    inference_precision: str = _setting(
        "FND_INFERENCE_PRECISION",
        "auto",
        "Encoders at inference: auto (per encoder: int8 on CPU where measured faster with the "
        "labels unchanged, else bf16 where native, else fp32) | fp32 | bf16 | int8",
    )
    retrain_cron: str = _setting("FND_RETRAIN_CRON", "0 2 * * *", "Cron of nightly retraining")
    train_queue: str = _setting(
        "FND_TRAIN_QUEUE", "default", "Airflow queue of the training task (e.g. gpu)"
    )
    train_backend: str = _setting(
        "FND_TRAIN_BACKEND",
        "local",
        "Where fnd_retrain trains: local (an Airflow worker) | vertex (a Vertex AI CustomJob)",
    )
    vertex_project: str | None = _setting(
        "FND_VERTEX_PROJECT", None, "Vertex AI project; unset: the GCP connection's project"
    )
    vertex_region: str = _setting("FND_VERTEX_REGION", "us-central1", "Vertex AI region")
    vertex_image: str | None = _setting(
        "FND_VERTEX_IMAGE", None, "fnd's image in Artifact Registry, run by the Vertex AI job"
    )
    vertex_machine_type: str = _setting(
        "FND_VERTEX_MACHINE_TYPE", "n1-standard-8", "Machine type of the Vertex AI training job"
    )
    vertex_accelerator_type: str = _setting(
        "FND_VERTEX_ACCELERATOR_TYPE",
        "NVIDIA_TESLA_T4",
        "Accelerator of the Vertex AI job (e.g. NVIDIA_L4); empty with count 0: CPU only",
    )
    vertex_accelerator_count: int = _setting(
        "FND_VERTEX_ACCELERATOR_COUNT", 1, "Accelerators attached to the Vertex AI job"
    )
    vertex_service_account: str | None = _setting(
        "FND_VERTEX_SERVICE_ACCOUNT", None, "Service account the Vertex AI job runs as"
    )
    vertex_database_url: str | None = _setting(
        "FND_VERTEX_DATABASE_URL",
        None,
        "fnd's database as the Vertex AI job reaches it (no password: IAM auth); unset: fnd_db",
    )
    vertex_network: str | None = _setting(
        "FND_VERTEX_NETWORK",
        None,
        "VPC the Vertex AI job is peered to (projects/N/global/networks/NAME), to reach the DB",
    )
    vertex_endpoint: str | None = _setting(
        "FND_VERTEX_ENDPOINT",
        None,
        "Vertex AI API endpoint override (REST), e.g. the test stand-in; unset: the region's",
    )
    vertex_poll_seconds: float = _setting(
        "FND_VERTEX_POLL_SECONDS", 60.0, "How often the training task asks Vertex AI about its job"
    )
    celery_broker_url: str = _setting(
        "FND_CELERY_BROKER_URL",
        "redis://127.0.0.1:6379/0",
        "Broker of `fnd up --executor celery` (Redis or RabbitMQ URL)",
    )
    gate_metric: str = _setting(
        "FND_GATE_METRIC",
        "balanced_accuracy",
        f"Gate metric, estimated by grouped cross-validation: {' | '.join(GATE_METRICS)}",
    )
    gate_min_accuracy: float = _setting(
        "FND_GATE_MIN_ACCURACY", 0.65, "Gate: floor on the gate metric's cross-validated estimate"
    )
    gate_baseline_margin: float = _setting(
        "FND_GATE_BASELINE_MARGIN",
        0.01,
        "Gate: the candidate must beat the prior and the text baseline by this much",
    )
    gate_tolerance: float = _setting(
        "FND_GATE_TOLERANCE",
        0.01,
        "Gate: allowed drop against the champion's recipe on the same folds",
    )
    cv_folds: int = _setting(
        "FND_CV_FOLDS", 5, "Grouped cross-validation folds behind the gate's estimate"
    )
    candidate_kinds: str = _setting(
        "FND_CANDIDATE_KINDS",
        "fusion,linear,text_linear,char_ngram",
        "Model kinds estimated on the same topic folds at each retraining; the best ships",
    )
    nested_selection: bool = _setting(
        "FND_NESTED_SELECTION",
        True,
        "Record the winning kind's estimate with the choice inside the folds (nested "
        "cross-validation over topics; costs kinds x folds x folds head fits)",
    )
    sweep_max_candidates: int = _setting(
        "FND_SWEEP_MAX_CANDIDATES",
        32,
        "Most candidates one model search (fnd sweep, fnd_sweep) may have: its mapped tasks; "
        "at most 256, well under Airflow's max_map_length",
    )
    sweep_cron: str | None = _setting(
        "FND_SWEEP_CRON", None, "Cron of the scheduled model search (fnd_sweep); unset: manual"
    )
    training_lease_hours: float = _setting(
        "FND_TRAINING_LEASE_HOURS",
        7.0,
        "At most one retraining or sweep at a time: a run's lease lasts this long past its "
        "last training step's start (a step may take 6 h); a holder silent longer is taken "
        "for dead and the next run takes the lease over",
    )
    training_lease_wait_hours: float = _setting(
        "FND_TRAINING_LEASE_WAIT_HOURS",
        12.0,
        "How long a retraining or sweep DAG run waits for another's lease before it fails "
        "(the CLI does not wait: it refuses at once)",
    )
    gate_new_recipe_margin: float = _setting(
        "FND_GATE_NEW_RECIPE_MARGIN",
        0.005,
        "Gate: a recipe other than the champion's must beat the champion's recipe on the same "
        "folds by this much, or by the paired fold-wise standard error if larger",
    )
    topic_objective: str = _setting(
        "FND_TOPIC_OBJECTIVE",
        "none",
        "Training across topics: none | balanced (topic x class cells weigh the same) | worst "
        "(toward the cells fitted worst) | adversarial (fusion hides the topic); see new-events",
    )
    cv_repeats: int = _setting(
        "FND_CV_REPEATS", 3, "Times the grouped folds are redrawn (estimates averaged)"
    )
    gate_min_class_recall: float = _setting(
        "FND_GATE_MIN_CLASS_RECALL", 0.5, "Gate: every class's recall must reach this"
    )
    drift_auc_threshold: float = _setting(
        "FND_DRIFT_AUC_THRESHOLD",
        0.6,
        "Drift: flag when a domain classifier tells current posts from training ones this well "
        "(raised for small batches: 4 standard errors above 0.5)",
    )
    drift_prior_tolerance: float = _setting(
        "FND_DRIFT_PRIOR_TOLERANCE",
        0.2,
        "Drift: flag when the predicted fake share is this far from the training fake share",
    )
    prior_min_posts: int = _setting(
        "FND_PRIOR_MIN_POSTS",
        300,
        "Scored posts a run needs before its fake share is estimated (EM on calibrated scores)",
    )
    decision_objective: str = _setting(
        "FND_DECISION_OBJECTIVE",
        "balanced",
        "Verdicts: balanced (0.5 on calibrated p_fake) | accuracy (threshold moved by the "
        "fake share estimated on the run's posts)",
    )
    drift_undecided_share: float = _setting(
        "FND_DRIFT_UNDECIDED_SHARE",
        0.35,
        "Drift: flag when more scores than this share sit near the threshold",
    )
    drift_max_score_kl: float = _setting(
        "FND_DRIFT_MAX_SCORE_KL",
        0.5,
        "Drift: flag when the scores' KL divergence from the champion's out-of-fold scores "
        "(ten bins) passes this",
    )
    drift_triggers_retrain: bool = _setting(
        "FND_DRIFT_TRIGGERS_RETRAIN",
        False,
        "Whether a flagged drift report (asset fnd://drift) starts fnd_retrain",
    )
    drift_retrain_cooldown_hours: float = _setting(
        "FND_DRIFT_RETRAIN_COOLDOWN_HOURS",
        24.0,
        "Drift asks for retraining once per champion and at most once in this many hours",
    )
    picture_evidence: bool = _setting(
        "FND_PICTURE_EVIDENCE",
        True,
        "Scoring looks up each post's nearest labelled picture (fnd.prediction_evidence)",
    )
    picture_match_bits: int = _setting(
        "FND_PICTURE_MATCH_BITS",
        6,
        "Perceptual-hash bits (of 64) within which a labelled picture counts as the same one",
    )
    label_trust_order: str = _setting(
        "FND_LABEL_TRUST_ORDER",
        "",
        "Label sources, most trusted first (comma-separated): a post's label is the latest "
        "received from the most trusted source; unlisted sources rank last; empty: latest wins",
    )
    realized_min_labels_per_class: int = _setting(
        "FND_REALIZED_MIN_LABELS_PER_CLASS",
        30,
        "fnd.realized_performance gives a week's balanced accuracy only with this many "
        "labelled verdicts of each class",
    )
    realized_alert_margin: float = _setting(
        "FND_REALIZED_ALERT_MARGIN",
        0.05,
        "Alert (and update fnd://drift) when realized balanced accuracy's 95% lower bound is "
        "this far below the champion gate's post-counted estimate",
    )
    score_shards: int = _setting("FND_SCORE_SHARDS", 2, "Mapped scoring tasks per fnd_score run")
    score_workers: int = _setting(
        "FND_SCORE_WORKERS", 1, "`fnd score` processes on CPU, one shard each unless --shards"
    )
    score_schedule: str = _setting(
        "FND_SCORE_SCHEDULE", "0 * * * *", "Backstop cron of fnd_score (it also runs on new posts)"
    )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Build settings from ``FND_*`` variables; unknown or empty ones keep the default."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            raw = environ.get(f.metadata["env"])
            if raw is None or raw == "":
                continue
            values[f.name] = _parse(f, raw)
        emulator = environ.get("STORAGE_EMULATOR_HOST")
        if "gcs_endpoint" not in values and emulator:  # what Google's client libraries honour
            values["gcs_endpoint"] = emulator if "://" in emulator else f"http://{emulator}"
        return cls(**values)

    @property
    def training_lease_ttl(self) -> timedelta:
        """How long a training run's lease holds without a renewal (FND_TRAINING_LEASE_HOURS)."""
        return _positive_hours("FND_TRAINING_LEASE_HOURS", self.training_lease_hours)

    @property
    def training_lease_wait(self) -> timedelta:
        """How long a DAG run waits for the lease (FND_TRAINING_LEASE_WAIT_HOURS)."""
        return _positive_hours("FND_TRAINING_LEASE_WAIT_HOURS", self.training_lease_wait_hours)

    # Derived locations --------------------------------------------------------------
    @property
    def landing(self) -> str:
        return self.landing_dir or str(self.home / "landing")

    @property
    def store(self) -> str:
        return self.store_uri or str(self.home / "store")

    @property
    def data_docs(self) -> Path:
        return self.data_docs_dir or self.home / "data_docs"

    @property
    def embedded_pgdata(self) -> Path:
        return self.home / "pgdata"

    def describe(self) -> list[tuple[str, str, str]]:
        """Rows of (variable, effective value, meaning), secrets masked, for `fnd config`."""
        rows = []
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            shown = "(embedded pgserver)" if f.name == "database_url" and value is None else value
            if f.name in {"landing_dir", "store_uri", "data_docs_dir"} and value is None:
                shown = {"landing_dir": self.landing, "store_uri": self.store}.get(
                    f.name, str(self.data_docs)
                )
            if f.name == "db_read_password" and value:
                shown = "***"
            rows.append((f.metadata["env"], mask_secrets(str(shown)), f.metadata["doc"]))
        return rows


def _parse(f: dataclasses.Field, raw: str) -> Any:
    """Convert one variable to the field's type, with an error that names the variable."""
    kind = str(f.type)
    if kind.startswith("bool"):
        value = raw.strip().lower()
        if value not in ("1", "true", "yes", "on", "0", "false", "no", "off", ""):
            raise ValueError(f"{f.metadata['env']}={raw!r} is not a valid bool: use true or false")
        return value in ("1", "true", "yes", "on")
    try:
        if kind.startswith("int"):
            return int(raw)
        if kind.startswith("float"):
            return float(raw)
        if "Path" in kind:
            return Path(raw)
    except ValueError as exc:
        raise ValueError(f"{f.metadata['env']}={raw!r} is not a valid {kind}: {exc}") from exc
    return raw


# user:password@ — the password runs to the *last* @ before the host (a raw @ in a password)
_URL_PASSWORD = re.compile(
    r"(?P<head>://[^:/@\s]*:)(?P<secret>[^\s/]*?)"
    r"(?P<tail>@[^@\s]*$|@(?=[^@\s/]*[/?#\s]|[^@\s]*$))"
)
_QUERY_SECRET = re.compile(
    r"(?P<head>[?&;](?:password|passwd|pwd|secret|token|api_key|apikey|access_token)=)"
    r"(?P<secret>[^&;#\s]+)",
    re.IGNORECASE,
)


def mask_secrets(text: str) -> str:
    """Hide passwords in URLs: ``u:***@host``, also with a raw ``@`` inside the password, and
    secrets in query strings (``?password=***``, ``&token=***``)."""
    text = _URL_PASSWORD.sub(r"\g<head>***\g<tail>", text)
    return _QUERY_SECRET.sub(r"\g<head>***", text)


def default(name: str) -> Any:
    """The default of setting ``name``: the one value code uses when no environment is read.

    Defaults live only in :class:`Settings`; the model config, the gate policy, the row checks,
    the CLI and the DAG Params read them from here instead of repeating them.
    """
    fields = {f.name: f for f in dataclasses.fields(Settings)}
    if name not in fields:
        raise KeyError(f"no setting named {name!r}")
    return fields[name].default
