"""A small client for Airflow 3's REST API: log in, trigger a DAG as the UI does, wait for runs.

Used by ``fnd up`` (the kick-off after start) and by the live-stack tests, so both drive Airflow
exactly as a user or another system would: over HTTP, with a JWT from ``/auth/token``. Standard
library only, and no airflow import: fnd_core never imports airflow.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")

TERMINAL_STATES = frozenset({"success", "failed"})


class AirflowApiError(RuntimeError):
    """The API answered with an error status (or not at all)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class RunTimeoutError(TimeoutError):
    """A DAG run (or the API itself) did not reach the awaited state in time."""


@dataclass
class AirflowClient:
    """Authenticated access to one Airflow API server (token fetched lazily, renewed on 401)."""

    base_url: str
    username: str
    password: str
    timeout_s: float = 30.0
    _token: str | None = field(default=None, repr=False)

    # -- transport ---------------------------------------------------------------------
    def _send(self, method: str, path: str, body: Any = None, auth: bool = True) -> Any:
        url = self.base_url.rstrip("/") + path
        data = None if body is None else json.dumps(body).encode()
        headers = {"Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        if auth:
            headers["Authorization"] = f"Bearer {self.token()}"
        request = urllib.request.Request(url, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                payload = response.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")[:500]
            raise AirflowApiError(
                f"{method} {path} -> HTTP {exc.code}: {detail}", status=exc.code
            ) from exc
        except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
            raise AirflowApiError(f"{method} {path} -> no answer from {url}: {exc}") from exc
        return json.loads(payload) if payload else None

    def request(self, method: str, path: str, body: Any = None) -> Any:
        """One authenticated call; a stale token (401) is renewed once."""
        try:
            return self._send(method, path, body)
        except AirflowApiError as exc:
            if exc.status != 401:
                raise
            self._token = None
            return self._send(method, path, body)

    def token(self) -> str:
        """A JWT for the configured user (POST /auth/token), cached until it is refused."""
        if self._token is None:
            answer = self._send(
                "POST",
                "/auth/token",
                {"username": self.username, "password": self.password},
                auth=False,
            )
            self._token = answer["access_token"]
        return self._token

    # -- reads -------------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        """The monitor endpoint: status of the metadatabase, scheduler, triggerer, processor."""
        return self._send("GET", "/api/v2/monitor/health", auth=False)

    def dag(self, dag_id: str) -> dict[str, Any] | None:
        """The DAG's details (params included), or None while it is not parsed yet."""
        try:
            return self.request("GET", f"/api/v2/dags/{_q(dag_id)}/details")
        except AirflowApiError as exc:
            if exc.status == 404:
                return None
            raise

    def dag_run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        return self.request("GET", f"/api/v2/dags/{_q(dag_id)}/dagRuns/{_q(run_id)}")

    def dag_runs(
        self, dag_id: str, *, run_types: Iterable[str] = (), states: Iterable[str] = ()
    ) -> list[dict[str, Any]]:
        """Runs of a DAG, oldest first, optionally filtered by run type and state."""
        query = [("order_by", "id"), ("limit", "100")]
        query += [("run_type", t) for t in run_types] + [("state", s) for s in states]
        path = f"/api/v2/dags/{_q(dag_id)}/dagRuns?{urllib.parse.urlencode(query)}"
        return self.request("GET", path)["dag_runs"]

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str | None]:
        """``task_id`` (``task_id[i]`` when mapped) → state, for assertions and messages."""
        return {
            ti["task_id"] + (f"[{ti['map_index']}]" if ti["map_index"] >= 0 else ""): ti["state"]
            for ti in self.task_instances(dag_id, run_id)
        }

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        """The run's task instances as the API gives them (state, hostname, try_number...)."""
        path = f"/api/v2/dags/{_q(dag_id)}/dagRuns/{_q(run_id)}/taskInstances?limit=100"
        return self.request("GET", path)["task_instances"]

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str = "return_value") -> Any:
        path = (
            f"/api/v2/dags/{_q(dag_id)}/dagRuns/{_q(run_id)}/taskInstances/{_q(task_id)}"
            f"/xcomEntries/{_q(key)}?deserialize=true"
        )
        return self.request("GET", path)["value"]

    # -- writes ------------------------------------------------------------------------
    def form_conf(self, dag_id: str, **overrides: Any) -> dict[str, Any]:
        """The conf the UI's trigger form sends: every Param's default, with ``overrides``."""
        details = self.dag(dag_id)
        if details is None:
            raise AirflowApiError(f"DAG {dag_id!r} is not known to Airflow (not parsed yet?)", 404)
        params = details.get("params") or {}
        unknown = set(overrides) - set(params)
        if unknown:
            raise ValueError(f"{dag_id} has no Param(s) {sorted(unknown)}; it has {sorted(params)}")
        return {name: overrides.get(name, spec.get("value")) for name, spec in params.items()}

    def trigger(self, dag_id: str, conf: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Trigger a run now, as the UI's Trigger button does (no logical date)."""
        body = {
            "conf": dict(conf or {}),
            "logical_date": None,
            "data_interval_start": None,
            "data_interval_end": None,
        }
        return self.request("POST", f"/api/v2/dags/{_q(dag_id)}/dagRuns", body)


def _q(part: str) -> str:
    return urllib.parse.quote(part, safe="")


def _poll(what: str, probe: Callable[[], T | None], timeout_s: float, interval_s: float) -> T:
    """Call ``probe`` until it returns something truthy; RunTimeoutError after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    last_error: Exception | None = None
    while True:
        try:
            result = probe()
            if result:
                return result
        except AirflowApiError as exc:
            last_error = exc
        if time.monotonic() >= deadline:
            suffix = f" (last error: {last_error})" if last_error else ""
            raise RunTimeoutError(f"timed out after {timeout_s:.0f}s waiting for {what}{suffix}")
        time.sleep(interval_s)


def is_healthy(report: Mapping[str, Any]) -> bool:
    """True when every component in a health report (metadatabase, scheduler, ...) is healthy."""
    statuses = [v.get("status") for v in report.values() if isinstance(v, dict)]
    return bool(statuses) and all(s == "healthy" for s in statuses)


def wait_for_dags(
    client: AirflowClient, dag_ids: Iterable[str], *, timeout_s: float = 180
) -> dict[str, dict[str, Any]]:
    """Wait until the DAG processor has parsed and registered each DAG; returns their details."""
    found: dict[str, dict[str, Any]] = {}

    def probe() -> dict[str, dict[str, Any]] | None:
        for dag_id in dag_ids:
            if dag_id not in found and (details := client.dag(dag_id)) is not None:
                found[dag_id] = details
        return found if set(found) >= set(dag_ids) else None

    return _poll(f"DAGs {sorted(dag_ids)}", probe, timeout_s, 1.0)


def wait_for_run(
    client: AirflowClient,
    dag_id: str,
    run_id: str,
    *,
    timeout_s: float = 600,
    interval_s: float = 2.0,
) -> dict[str, Any]:
    """Wait until the run is finished (success or failed); returns the run."""

    def probe() -> dict[str, Any] | None:
        run = client.dag_run(dag_id, run_id)
        return run if run["state"] in TERMINAL_STATES else None

    return _poll(f"{dag_id} run {run_id} to finish", probe, timeout_s, interval_s)


def wait_for_new_run(
    client: AirflowClient,
    dag_id: str,
    *,
    run_type: str,
    known: Iterable[str] = (),
    timeout_s: float = 300,
) -> dict[str, Any]:
    """Wait until a run of ``run_type`` appears whose id is not in ``known``; returns it."""
    known = set(known)

    def probe() -> dict[str, Any] | None:
        fresh = [
            r for r in client.dag_runs(dag_id, run_types=[run_type]) if r["dag_run_id"] not in known
        ]
        return fresh[0] if fresh else None

    return _poll(f"a new {run_type} run of {dag_id}", probe, timeout_s, 2.0)
