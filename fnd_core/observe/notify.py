"""Failure alerts in fnd terms: which file, which rule, which model version — not a traceback.

An Airflow failure says "task ingest_file[3] failed". An operator needs "file
``landing/posts_0412.jsonl`` was rejected: 412 of 500 rows quarantined (82% > 50%), rules:
image_missing ×400, text_empty ×12". This module builds that message:

- :func:`facts_from_context` reads what the failing task was from an Airflow task context
  (duck-typed: this module never imports airflow);
- :func:`fnd_core.observe.monitoring_runs.run_records` reads what fnd recorded for the run
  (batches, quarantine rules, failed GX expectations, model versions and their gate decisions);
- :func:`describe_failure` — a pure function of those two — writes the alert;
- :func:`on_task_failure` does all three, logs the alert and hands it to a notifier.

Sending: the DAGs' ``on_failure_callback`` (``fnd_airflow.dag_support``) passes the notifier named
by ``FND_ALERT_NOTIFIER`` — the import path of an Airflow notifier class, e.g.
``airflow.providers.smtp.notifications.smtp.SmtpNotifier`` or
``airflow.providers.slack.notifications.slack_webhook.SlackWebhookNotifier`` — built with
the JSON object ``FND_ALERT_NOTIFIER_KWARGS`` as keyword arguments. Those arguments are Jinja
templates rendered with the task context plus ``fnd_alert_title`` and ``fnd_alert_text``::

    FND_ALERT_NOTIFIER=airflow.providers.slack.notifications.slack_webhook.SlackWebhookNotifier
    FND_ALERT_NOTIFIER_KWARGS='{"slack_webhook_conn_id": "fnd", "text": "{{ fnd_alert_text }}"}'

Without ``FND_ALERT_NOTIFIER`` the alert is only logged (at ERROR, in the task's log). The
title and text handed to a notifier are HTML-escaped (file names come from whoever writes to
the landing zone); ``fnd_alert_plain`` is the unescaped text.
"""

from __future__ import annotations

import html
import importlib
import json
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from fnd_core import contracts

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from fnd_core.observe.monitoring_runs import RunRecords

log = logging.getLogger(__name__)

_MAX_RULES = 5  # quarantine rules named in an alert, most frequent first
_MAX_EXPECTATIONS = 5
_MAX_EXCEPTION_CHARS = 500
# Lines that already say why (from fnd's records): the raw exception would only repeat them.
_EXPLAINING = ("reason:", "GX suite")
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


@dataclass(frozen=True)
class FailureFacts:
    """What failed, as Airflow knows it: the task, its run, its mapped input, the exception."""

    dag_id: str
    task_id: str
    run_id: str
    map_index: int | None = None
    try_number: int | None = None
    exception: str | None = None
    exception_type: str | None = None
    file_uri: str | None = None  # fnd_ingest.ingest_file: the mapped landing file
    shard: Mapping[str, Any] | None = None  # fnd_score.score_shard: the mapped shard
    log_url: str | None = None


@dataclass(frozen=True)
class Alert:
    """A failure told in fnd terms: a one-line title, detail lines, and structured fields."""

    title: str
    lines: tuple[str, ...]
    fields: dict[str, Any] = field(default_factory=dict)

    @property
    def text(self) -> str:
        return "\n".join((self.title, *(f"- {line}" for line in self.lines)))


def facts_from_context(context: Mapping[str, Any]) -> FailureFacts:
    """Read the failing task from an Airflow task context (``on_failure_callback``'s argument).

    Only plain attribute and key access: the context is a mapping with ``ti``, ``run_id``,
    ``exception`` and ``task`` (whose ``op_kwargs`` hold a mapped task's expanded input).
    """
    ti = context.get("ti") or context.get("task_instance")
    task = context.get("task")
    exception = context.get("exception")
    op_kwargs = getattr(task, "op_kwargs", None) or {}
    map_index = getattr(ti, "map_index", None)
    return FailureFacts(
        dag_id=str(getattr(ti, "dag_id", None) or getattr(context.get("dag"), "dag_id", "?")),
        task_id=str(getattr(ti, "task_id", None) or getattr(task, "task_id", "?")),
        run_id=str(context.get("run_id") or getattr(ti, "run_id", "?")),
        map_index=map_index if isinstance(map_index, int) and map_index >= 0 else None,
        try_number=getattr(ti, "try_number", None),
        exception=None if exception is None else _clip(str(exception)),
        exception_type=None if exception is None else type(exception).__name__,
        file_uri=_file_uri(op_kwargs.get("uri")),
        shard=op_kwargs.get("shard") if isinstance(op_kwargs.get("shard"), Mapping) else None,
        log_url=getattr(ti, "log_url", None),
    )


def describe_failure(facts: FailureFacts, records: RunRecords | None = None) -> Alert:
    """The alert for a failed fnd task: pure, from the facts and what fnd recorded for the run.

    Args:
        facts: the failing task (see :func:`facts_from_context`).
        records: fnd's rows for the run (:func:`fnd_core.observe.monitoring_runs.run_records`),
            or None when they could not be read; the alert then rests on the exception alone.
    """
    if facts.dag_id == contracts.INGEST_DAG:
        title, lines = _ingest(facts, records)
    elif facts.dag_id == contracts.RETRAIN_DAG:
        title, lines = _retrain(facts, records)
    elif facts.dag_id == contracts.SCORE_DAG:
        title, lines = _score(facts)
    else:
        title, lines = f"{facts.dag_id}.{facts.task_id} failed", []
    explained = any(line.startswith(_EXPLAINING) for line in lines)
    if facts.exception and not explained:
        kind = f"{facts.exception_type}: " if facts.exception_type else ""
        lines.append(f"error: {kind}{facts.exception}")
    where = f"run {facts.run_id}, task {facts.task_id}"
    if facts.map_index is not None:
        where += f"[{facts.map_index}]"
    if facts.try_number is not None:
        where += f", try {facts.try_number}"
    lines.append(where)
    if facts.log_url:
        lines.append(f"log: {facts.log_url}")
    fields = {
        "dag_id": facts.dag_id,
        "task_id": facts.task_id,
        "run_id": facts.run_id,
        "map_index": facts.map_index,
        "file_uri": facts.file_uri,
        "exception_type": facts.exception_type,
    }
    return Alert(f"[fnd] {title}", tuple(lines), fields)


def _ingest(facts: FailureFacts, records: RunRecords | None) -> tuple[str, list[str]]:
    uri = facts.file_uri
    if facts.task_id != contracts.INGEST_FILE_TASK or not uri:
        return f"{contracts.INGEST_DAG}.{facts.task_id} failed", []
    name = one_line(_basename(uri))
    lines = [f"file: {one_line(uri)}"]
    batch = _batch_of(records, uri)
    if batch is None:
        return f"ingest of {name} failed", lines
    if batch.get("error"):
        lines.append(f"reason: {one_line(batch['error'])}")
    rules = batch.get("quarantine_rules") or []
    if rules:
        named = ", ".join(f"{r['rule']} ×{r['n_rows']}" for r in rules[:_MAX_RULES])
        more = f" (+{len(rules) - _MAX_RULES} more)" if len(rules) > _MAX_RULES else ""
        lines.append(f"quarantine rules: {named}{more}")
        lines.append(f"e.g. {rules[0]['rule']}: {rules[0]['example_reason']}")
    lines.extend(_validation_lines(records, batch_id=batch["batch_id"]))
    if batch.get("archived_uri"):
        lines.append(f"moved to: {one_line(batch['archived_uri'])}")
    counts = (
        f"received {batch.get('n_received', 0)}, accepted {batch.get('n_accepted', 0)}, "
        f"quarantined {batch.get('n_quarantined', 0)}"
    )
    lines.insert(1, f"batch {batch['batch_id']} {batch.get('status')}: {counts}")
    verb = "rejected" if batch.get("status") == "failed" else "failed"
    return f"file {name} {verb}", lines


def _retrain(facts: FailureFacts, records: RunRecords | None) -> tuple[str, list[str]]:
    if facts.task_id == contracts.VALIDATE_SNAPSHOT_TASK:
        lines = _validation_lines(records, suite="training_set")
        return "training snapshot failed its data-quality suite (nothing trained)", lines
    models = records.models if records else []
    if not models:
        return f"retraining failed at {facts.task_id} (no model version recorded)", []
    model = models[0]
    lines = [f"model version: {model['version']} ({model['status']})"]
    if model.get("test_accuracy") is not None:
        lines.append(f"test accuracy: {model['test_accuracy']:.4f}")
    if model.get("gate_decision"):
        lines.append(f"gate: {model['gate_decision']} — {model.get('gate_reason')}")
    if model.get("forced_by"):
        lines.append(f"forced by: {model['forced_by']}")
    return f"retraining of {model['version']} failed at {facts.task_id}", lines


def _score(facts: FailureFacts) -> tuple[str, list[str]]:
    shard = facts.shard
    if facts.task_id != contracts.SCORE_SHARD_TASK or not shard:
        return f"{contracts.SCORE_DAG}.{facts.task_id} failed", []
    label = f"{shard.get('shard')}/{shard.get('n_shards')}"
    lines = [
        f"model version: {shard.get('model_version')}",
        f"shard {label}: {shard.get('n_todo', '?')} post(s) to score; finished pages are kept, "
        "a rerun scores the rest",
    ]
    return f"scoring shard {label} with {shard.get('model_version')} failed", lines


def _batch_of(records: RunRecords | None, uri: str | None) -> dict[str, Any] | None:
    if records is None:
        return None
    return next((b for b in records.batches if b.get("source_uri") == uri), None)


def _validation_lines(
    records: RunRecords | None, *, batch_id: int | None = None, suite: str | None = None
) -> list[str]:
    from fnd_core.observe.monitoring_quality import failed_expectation_names

    lines = []
    for v in records.failed_validations if records else []:
        if (batch_id is not None and v.get("batch_id") != batch_id) or (
            suite is not None and v.get("suite") != suite
        ):
            continue
        names = failed_expectation_names(v.get("failed_expectations") or [])
        shown = "; ".join(names[:_MAX_EXPECTATIONS]) or "no expectation details"
        lines.append(f"GX suite {v['suite']} failed on {v['batch_name']}: {shown}")
        if v.get("data_docs_uri"):
            lines.append(f"data docs: {v['data_docs_uri']}")
    return lines


def on_task_failure(
    context: Mapping[str, Any],
    *,
    engine_factory: Callable[[], Engine] | None = None,
    notifier: Callable[[dict[str, Any]], Any] | str | None = None,
    notifier_kwargs: str | None = None,
) -> Alert:
    """Build the alert for a failed task, log it, and send it through ``notifier`` if any.

    Never raises: a failure callback that fails hides the original failure. If fnd's records
    cannot be read, or the notifier cannot be built or fails, that is logged and the alert
    is still logged.

    Args:
        context: the Airflow task context of the failed task.
        engine_factory: makes an engine on fnd's database
            (e.g. ``fnd_airflow.dag_support.fnd_engine``).
        notifier: called with the context plus ``fnd_alert_title`` and ``fnd_alert_text``
            (an Airflow ``BaseNotifier`` instance fits), or the import path of a notifier
            class, built anew for this alert with the JSON object ``notifier_kwargs``.
    """
    try:
        facts = facts_from_context(context)
    except Exception:  # a context shape we do not know: still say something
        log.exception("fnd alert: could not read the task context")
        facts = FailureFacts(dag_id="?", task_id="?", run_id=str(context.get("run_id", "?")))
    records = _records(facts, engine_factory)
    alert = describe_failure(facts, records)
    log.error("%s", alert.text)
    send(alert, context, notifier, notifier_kwargs)
    return alert


def send(
    alert: Alert,
    context: Mapping[str, Any],
    notifier: Callable[[dict[str, Any]], Any] | str | None,
    notifier_kwargs: str | None = None,
) -> None:
    """Hand ``alert`` to the notifier (see :func:`on_task_failure`); never raises."""
    if notifier is None:
        return
    try:
        if isinstance(notifier, str):
            notifier = load_notifier(notifier, notifier_kwargs)
            if notifier is None:  # an empty path: no notifier configured
                return
        notifier({**context, **alert_fields(alert)})
    except Exception:
        log.exception("fnd alert: the notifier failed; the alert above was not sent")


def _records(facts: FailureFacts, engine_factory: Callable[[], Engine] | None) -> RunRecords | None:
    if engine_factory is None:
        return None
    from fnd_core.observe.monitoring_runs import run_records

    engine = None
    try:
        engine = engine_factory()
        return run_records(engine, facts.run_id, source_uri=facts.file_uri)
    except Exception:
        log.exception("fnd alert: could not read fnd's records of run %s", facts.run_id)
        return None
    finally:
        if engine is not None:
            engine.dispose()


def load_notifier(class_path: str | None, kwargs_json: str | None = None) -> Any | None:
    """Build the notifier named by an import path with JSON keyword arguments; None if unset.

    Raises:
        ValueError: the path does not name a class, or the arguments are not a JSON object.
    """
    if not class_path:
        return None
    module_name, _, class_name = class_path.rpartition(".")
    if not module_name:
        raise ValueError(f"notifier {class_path!r} must be a full import path: module.Class")
    try:
        kwargs = json.loads(kwargs_json) if kwargs_json else {}
    except json.JSONDecodeError as exc:
        raise ValueError(f"notifier arguments are not valid JSON: {exc}") from exc
    if not isinstance(kwargs, dict):
        raise ValueError(f"notifier arguments must be a JSON object, got {type(kwargs).__name__}")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"cannot import notifier {class_path!r}: {exc}") from exc
    return cls(**kwargs)


def _file_uri(value: Any) -> str | None:
    """The mapped landing file as fnd records it (``fnd.ingest_batches.source_uri``): the DAG
    passes it in the XCom-safe form of :func:`fnd_core.io.storage.portable`."""
    from fnd_core.io import storage

    return storage.printable(storage.from_portable(value)) if isinstance(value, str) else None


def alert_fields(alert: Alert) -> dict[str, str]:
    """What a notifier's templates see. A landing file name is chosen by whoever writes to the
    landing zone, so the title and text are HTML-escaped (``&``, ``<``, ``>``: what an e-mail's
    ``<pre>{{ fnd_alert_text }}</pre>`` and Slack's text both need); ``fnd_alert_plain`` is
    the text as is, for notifiers that render nothing."""
    return {
        "fnd_alert_title": html.escape(alert.title, quote=False),
        "fnd_alert_text": html.escape(alert.text, quote=False),
        "fnd_alert_plain": alert.text,
    }


def one_line(text: str) -> str:
    """``text`` with control characters (a newline in a file name...) as ``\\xNN`` escapes,
    so a value cannot forge lines of an alert."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def _basename(uri: str) -> str:
    return uri.rstrip("/").rsplit("/", 1)[-1]


def _clip(text: str) -> str:
    text = text.strip()
    return text if len(text) <= _MAX_EXCEPTION_CHARS else text[: _MAX_EXCEPTION_CHARS - 1] + "…"
