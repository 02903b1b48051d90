"""Google Cloud the Airflow way: the connection's credentials, the landing sensor, Vertex AI.

- :func:`install` registers, in fnd_core, a provider that builds ``gs://`` credentials from the
  Airflow connection ``FND_GCP_CONN_ID`` through apache-airflow-providers-google's ``GCSHook``
  (key file, key JSON, Secret Manager key, workload identity federation, impersonation chain,
  anonymous: whatever the connection says), once per task try.
- :func:`landing_location` splits a ``gs://`` landing zone into the bucket and the glob the
  provider's deferrable ``GCSObjectExistenceSensor`` watches.
- :class:`VertexJobHook` is the provider's ``CustomJobHook`` that can also talk REST to an
  endpoint override (``FND_VERTEX_ENDPOINT``), which is how the tests reach their stand-in.

Nothing here imports the provider at module level: DAG files import this at parse time.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Hashable
from typing import TYPE_CHECKING, Any

from fnd_core import contracts

if TYPE_CHECKING:
    from airflow.providers.google.cloud.hooks.vertex_ai.custom_job import CustomJobHook
    from google.cloud.aiplatform_v1 import JobServiceClient
    from sqlalchemy.engine import Engine

    from fnd_core.io.gcp import CredentialsProvider, GcpAuth
    from fnd_core.settings import Settings

log = logging.getLogger(__name__)

DEFAULT_CONN_ID = contracts.GCP_CONN_ID


def install(settings: Settings) -> None:
    """Make fnd_core's ``gs://`` access use the Airflow connection (no I/O: looked up lazily)."""
    from fnd_core.io import gcp

    gcp.configure(endpoint=settings.gcs_endpoint, provider=_provider(settings.gcp_conn_id))


_PROVIDERS: dict[str, CredentialsProvider] = {}


def _provider(conn_id: str) -> CredentialsProvider:
    from fnd_core.io import gcp

    if conn_id not in _PROVIDERS:  # one object per id, so configure() sees "no change"
        _PROVIDERS[conn_id] = gcp.CredentialsProvider(
            resolve=lambda endpoint: connection_auth(conn_id, endpoint), cache_key=_task_key
        )
    return _PROVIDERS[conn_id]


def _task_key() -> Hashable | None:
    """The running task try (credentials are resolved once per try), or None outside one."""
    try:
        from airflow.sdk import get_current_context

        ti = get_current_context()["ti"]
    except Exception:  # noqa: BLE001 — no task context (API server, plugin, plain Python)
        return None
    return (ti.dag_id, ti.run_id, ti.task_id, ti.map_index, ti.try_number)


def connection_auth(conn_id: str, endpoint: str | None) -> GcpAuth | None:
    """The connection's credentials as fnd_core wants them; None: fall back to ADC.

    A missing ``google_cloud_default`` falls back to Application Default Credentials (what the
    provider itself does for a connection without a key); a missing connection named
    explicitly by ``FND_GCP_CONN_ID`` is an error. Against an emulator, a connection that
    yields no credentials means anonymous requests.
    """
    from airflow.providers.google.cloud.hooks.gcs import GCSHook
    from google.auth.exceptions import DefaultCredentialsError

    from fnd_core.io import gcp

    try:
        from airflow.sdk.exceptions import AirflowNotFoundException
    except ImportError:  # pragma: no cover — older task SDKs
        from airflow.exceptions import AirflowNotFoundException

    try:
        hook = GCSHook(gcp_conn_id=conn_id)  # reads the connection
        credentials, project = hook.get_credentials_and_project_id()
    except AirflowNotFoundException:
        if conn_id != DEFAULT_CONN_ID:
            raise
        log.info("no Airflow connection %s: gs:// uses application default credentials", conn_id)
        return None
    except DefaultCredentialsError:
        if not endpoint:
            raise
        return gcp.GcpAuth(gcp.ANONYMOUS, None, f"anonymous (connection {conn_id} has no key)")
    from google.auth.credentials import AnonymousCredentials

    who = getattr(credentials, "service_account_email", None) or type(credentials).__name__
    kept: object = credentials
    if isinstance(credentials, AnonymousCredentials):  # is_anonymous: gcsfs's own spelling
        kept = gcp.ANONYMOUS
    return gcp.GcpAuth(kept, project or None, f"Airflow connection {conn_id} ({who})")


def landing_location(landing: str) -> tuple[str, str] | None:
    """``(bucket, glob)`` of the files waiting in a ``gs://`` landing zone, else None.

    The glob matches what ingest takes: objects directly under the prefix whose name does not
    start with a dot; ``*`` does not cross ``/``, so ``archive/``, ``failed/`` and
    ``images/`` are not matched (GCS ``matchGlob`` syntax).
    """
    scheme, _, rest = landing.partition("://")
    if scheme not in ("gs", "gcs") or not rest:
        return None
    bucket, _, prefix = rest.partition("/")
    prefix = prefix.strip("/")
    if any(c in prefix for c in "*?[]{}\\"):
        raise ValueError(f"landing zone {landing!r}: glob characters are not allowed in it")
    return bucket, (f"{prefix}/" if prefix else "") + "[!.]*"


def vertex_hook(settings: Settings) -> CustomJobHook:
    """The Vertex AI CustomJob hook on the connection (REST to ``FND_VERTEX_ENDPOINT`` if set)."""
    from airflow.providers.google.cloud.hooks.vertex_ai.custom_job import CustomJobHook

    class VertexJobHook(CustomJobHook):
        """``CustomJobHook`` whose job client may use an endpoint override over REST.

        The provider's client speaks gRPC to ``REGION-aiplatform.googleapis.com``; with
        ``FND_VERTEX_ENDPOINT`` set (the tests' local stand-in for the Vertex AI REST API)
        it speaks the same API's REST binding to that endpoint. Credentials are the
        connection's in both cases.
        """

        def get_job_service_client(self, region: str | None = None) -> JobServiceClient:
            if not settings.vertex_endpoint:
                return super().get_job_service_client(region)
            from google.api_core.client_options import ClientOptions
            from google.cloud.aiplatform_v1 import JobServiceClient

            return JobServiceClient(
                credentials=self.get_credentials(),
                transport="rest",
                client_options=ClientOptions(api_endpoint=settings.vertex_endpoint),
            )

    return VertexJobHook(gcp_conn_id=settings.gcp_conn_id)


def train_on_vertex(
    settings: Settings, engine: Engine, snap: dict[str, Any], *, run_id: str, epochs: int,
    preset: str | None, database_url: str,
) -> dict[str, Any]:  # fmt: skip
    """Run this run's training as a Vertex AI CustomJob and return the candidate it registered.

    The job specification is fnd_core.pipeline.vertex's (pure, unit-tested); the job is created and
    followed through the provider's ``CustomJobHook`` on the connection ``FND_GCP_CONN_ID``.
    If this task is stopped (timeout, kill) the job is cancelled, not left running.
    """
    from google.cloud.aiplatform_v1 import CustomJob

    from fnd_core.pipeline import remote_training, vertex

    result_uri = remote_training.result_uri(settings, run_id)
    spec = vertex.job_spec(
        settings, snapshot=snap, run_id=run_id, epochs=epochs, preset=preset,
        result_uri=result_uri, database_url=settings.vertex_database_url or database_url,
    )  # fmt: skip
    region = vertex.check_region(settings.vertex_region)
    hook = vertex_hook(settings)
    project = settings.vertex_project or hook.project_id
    job = hook.create_custom_job(
        project_id=project, region=region, custom_job=CustomJob.from_json(json.dumps(spec))
    )
    job_id = vertex.job_id(job.name)
    log.info("Vertex AI job %s (%s) trains %s", job.name, spec["displayName"], run_id)
    try:
        hook.wait_for_custom_job(
            project_id=project, region=region, custom_job_id=job_id,
            poll_interval=max(1, int(settings.vertex_poll_seconds)),
        )  # fmt: skip
    except BaseException as exc:
        if isinstance(exc, RuntimeError):  # the job itself failed: nothing to cancel
            raise RuntimeError(f"Vertex AI job {job.name} failed: {exc}") from exc
        log.warning("stopping: cancelling Vertex AI job %s", job.name)
        with contextlib.suppress(Exception):
            hook.cancel_custom_job(project_id=project, region=region, custom_job=job_id)
        raise
    candidate = remote_training.read_result(engine, settings, result_uri)
    log.info("Vertex AI job %s registered candidate %s", job.name, candidate["version"])
    return candidate | {"vertex_job": job.name}
