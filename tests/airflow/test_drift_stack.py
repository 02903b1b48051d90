"""Drift, live: a shifted batch lands, the scheduler scores it, the run is flagged, the alert
goes out by e-mail through Airflow's own SmtpNotifier, and fnd://drift starts fnd_retrain.

`fnd up` (LocalExecutor, real scheduler and triggerer) with FND_DRIFT_TRIGGERS_RETRAIN=true
and FND_ALERT_NOTIFIER set to the SMTP provider's notifier, whose connection points at a mail
server on loopback that keeps what it receives (tests/smtp_sink.py). The champion is trained
in-process on the stack's database and store (offline preset: the real pretrained encoders
whose features the domain classifier compares).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sqlalchemy as sa

from fnd_core.stack.airflow_rest import wait_for_new_run, wait_for_run
from fnd_core.stack.demo import generate_batch
from tests.smtp_sink import SmtpSink

pytest_plugins = ["tests.airflow.live_stack"]
pytestmark = [pytest.mark.airflow, pytest.mark.slow]

OPS = "ops@example.org"


@pytest.fixture(scope="module")
def drift_stack(create_database, tmp_path_factory):
    from tests.airflow.live_stack import running_stack, wait_idle

    with SmtpSink() as sink:
        smtp = {"conn_type": "smtp", "host": "127.0.0.1", "port": sink.port,
                "extra": {"disable_tls": True, "disable_ssl": True}}  # fmt: skip
        notifier = {"to": OPS, "from_email": "fnd@example.org", "smtp_conn_id": "fnd_smtp",
                    "subject": "{{ fnd_alert_title }}",
                    "html_content": "<pre>{{ fnd_alert_text }}</pre>"}  # fmt: skip
        env = {
            "FND_DRIFT_TRIGGERS_RETRAIN": "true",
            "FND_ALERT_NOTIFIER": "airflow.providers.smtp.notifications.smtp.SmtpNotifier",
            "FND_ALERT_NOTIFIER_KWARGS": json.dumps(notifier),
            "AIRFLOW_CONN_FND_SMTP": json.dumps(smtp),
            "FND_MODEL_PRESET": "offline",
            # What is shown is drift -> alert -> retraining -> a gate decision, not which kind
            # wins: one candidate kind, 10 epochs at most (the champion below is made alike).
            "FND_CV_REPEATS": "1",
            "FND_CANDIDATE_KINDS": "linear",
            "FND_TRAIN_EPOCHS": "10",
        }
        home = tmp_path_factory.mktemp("drift-stack")
        with running_stack(create_database, home, env=env) as stack:
            wait_idle(stack.client)
            yield stack, sink


def _champion(stack) -> str:
    """A champion trained in-process on 300 demo posts, straight into the stack's database;
    its training posts scored, as the rescoring after a promotion does."""
    from fnd_core.ingest.load import ingest_file
    from fnd_core.pipeline import retrain, scoring
    from fnd_core.settings import Settings

    settings = Settings(home=stack.home, database_url=stack.fnd_url, cv_repeats=1,
                        num_workers=0, candidate_kinds="linear")  # fmt: skip
    engine = stack.engine()
    batch = generate_batch(Path(settings.landing) / "seed", 300, seed=31)
    assert ingest_file(engine, str(batch.data_file), settings, run_id="seed").n_accepted == 300
    outcome = retrain.run(engine, settings, forced_by="tests", preset="offline", epochs=10)
    assert outcome["decision"] == "promote", outcome
    scoring.score_shard(engine, settings, model_version=outcome["version"], run_id="seed")
    engine.dispose()
    return outcome["version"]


def test_a_shifted_batch_alerts_by_mail_and_starts_retraining(drift_stack):
    from tests.airflow.live_stack import wait_idle

    stack, sink = drift_stack
    client, engine = stack.client, stack.engine()
    champion = _champion(stack)

    batch = generate_batch(Path(stack.home) / "landing", 80, seed=32)
    rows = [json.loads(line) for line in batch.data_file.read_text().splitlines()]
    batch.data_file.write_text("".join(  # the same posts, shouted: a new caption style
        json.dumps({**r, "text": f"BREAKING!!! {r['text'].upper()} RT PLS #viral"}) + "\n"
        for r in rows
    ))  # fmt: skip
    known_scores = {r["dag_run_id"] for r in client.dag_runs("fnd_score")}
    known_retrains = {r["dag_run_id"] for r in client.dag_runs("fnd_retrain")}

    ingest = client.trigger("fnd_ingest", client.form_conf("fnd_ingest"))
    done = wait_for_run(client, "fnd_ingest", ingest["dag_run_id"], timeout_s=300)
    assert done["state"] == "success", client.task_states("fnd_ingest", ingest["dag_run_id"])

    score = wait_for_new_run(client, "fnd_score", run_type="asset_triggered", known=known_scores)
    score = wait_for_run(client, "fnd_score", score["dag_run_id"], timeout_s=300)
    states = client.task_states("fnd_score", score["dag_run_id"])
    assert score["state"] == "success", states
    assert states["drift_alert"] == "success" and states["request_retrain"] == "success", states
    with engine.connect() as conn:
        reasons, requested = conn.execute(sa.text(
            "select reasons, retrain_requested from fnd.drift_summary "
            "where kind = 'scoring_run' and subject = :run"
        ), {"run": score["dag_run_id"]}).one()  # fmt: skip
    assert requested and any(r.startswith("text inputs") for r in reasons), reasons

    # The e-mail went out through the SMTP provider's notifier (the batch's own check at
    # ingest alerts too: both are there).
    subjects = [m["Subject"] for m in sink.messages]
    assert f"fnd: drift in scoring run {score['dag_run_id']} (80 posts)" in subjects, subjects
    mail = next(m for m in sink.messages if "scoring run" in m["Subject"])
    assert mail["To"] == OPS and "text inputs differ" in mail.get_body().get_content()

    # fnd://drift started fnd_retrain, which ran to its gate decision.
    retrain = wait_for_new_run(client, "fnd_retrain", run_type="asset_triggered",
                               known=known_retrains)  # fmt: skip
    retrain = wait_for_run(client, "fnd_retrain", retrain["dag_run_id"], timeout_s=600)
    retrain_states = client.task_states("fnd_retrain", retrain["dag_run_id"])
    assert retrain["state"] == "success", retrain_states
    assert "success" in {retrain_states["promote"], retrain_states["reject"]}, retrain_states
    with engine.connect() as conn:
        versions = conn.execute(sa.text("select count(*) from fnd.model_versions")).scalar_one()
    assert versions == 2, champion  # the drift-triggered candidate, judged by the gate
    wait_idle(client)  # a promotion's rescoring; no second retraining (once per cooldown)
    assert len(client.dag_runs("fnd_retrain", run_types=["asset_triggered"])) == 1
    engine.dispose()
