"""Where fnd's ``gs://`` credentials come from: one place, whatever runs fnd.

Every ``gs://`` filesystem fnd builds (landing zone, image and model store) asks
:func:`gcs_filesystem`, which hands gcsfs the credentials :func:`current_auth` resolves:

1. inside Airflow, a *credentials provider* registered by the Airflow glue
   (``fnd_airflow/gcp.py``): the credentials of the Airflow connection ``FND_GCP_CONN_ID``,
   built by apache-airflow-providers-google's ``GCSHook``, so a deployment's
   ``google_cloud_default`` connection is honoured the way every provider operator honours it;
2. otherwise (the ``fnd`` CLI, a Vertex AI training job) Application Default Credentials,
   ``google.auth.default()``: the chain an Airflow connection without a key falls back to too;
3. against a local emulator (an endpoint is set) and with nothing else configured, anonymous
   requests, as the emulator ignores tokens.

This module never imports Airflow: the provider is a plain callable. It holds process-wide
state (the endpoint and the provider) because storage helpers are called from deep inside
ingest, training and scoring, where no settings object is at hand.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

SCOPES = ("https://www.googleapis.com/auth/cloud-platform",)
ANONYMOUS = "anon"  # gcsfs's spelling of "no credentials"
_UNKEYED_TTL_S = 300.0  # outside a task, how long resolved credentials are reused


@dataclass(frozen=True)
class GcpAuth:
    """Credentials for Google APIs and where they came from (shown in logs, never secret)."""

    credentials: Any  # a google.auth Credentials object, or ANONYMOUS
    project: str | None
    source: str


@dataclass(frozen=True)
class CredentialsProvider:
    """How the Airflow glue supplies credentials without fnd_core importing Airflow.

    ``resolve`` returns the credentials (or None: fall back to ADC); ``cache_key`` names the
    unit of reuse (a task try) so a connection is read once per task, not once per file;
    None means "not inside a task": results are then reused for a few minutes.
    """

    resolve: Callable[[str | None], GcpAuth | None]
    cache_key: Callable[[], Hashable | None]


class _State:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.endpoint: str | None = None
        self.provider: CredentialsProvider | None = None
        self.cached: tuple[Hashable, float, GcpAuth] | None = None


_state = _State()


def configure(*, endpoint: str | None, provider: CredentialsProvider | None = None) -> None:
    """Set the process's GCS endpoint override (an emulator) and credentials provider.

    Cheap (no I/O): called wherever settings are read for use (the CLI, every Airflow task).
    """
    with _state.lock:
        if (endpoint, provider) != (_state.endpoint, _state.provider):
            _state.cached = None
        _state.endpoint, _state.provider = endpoint, provider


def default_endpoint() -> str | None:
    """The endpoint override set by :func:`configure` (None: real GCS)."""
    return _state.endpoint


def current_auth(endpoint: str | None = None) -> GcpAuth:
    """The credentials ``gs://`` access uses now (see the module docstring for the order)."""
    endpoint = endpoint or _state.endpoint
    provider = _state.provider
    key = provider.cache_key() if provider else None
    with _state.lock:
        cached = _state.cached
        if cached is not None and cached[0] == (key, endpoint):
            fresh = key is not None or time.monotonic() - cached[1] < _UNKEYED_TTL_S
            if fresh:
                return cached[2]
    auth = provider.resolve(endpoint) if provider else None
    if auth is None:
        auth = _application_default(endpoint)
    log.info("gs:// credentials: %s (project %s)", auth.source, auth.project or "-")
    with _state.lock:
        _state.cached = ((key, endpoint), time.monotonic(), auth)
    return auth


def _application_default(endpoint: str | None) -> GcpAuth:
    """ADC, the chain the CLI and Vertex AI jobs use; anonymous against an emulator."""
    if endpoint:
        return GcpAuth(ANONYMOUS, None, f"anonymous (emulator at {endpoint})")
    import google.auth
    from google.auth.exceptions import DefaultCredentialsError

    try:
        credentials, project = google.auth.default(scopes=list(SCOPES))
    except DefaultCredentialsError as exc:
        raise GcpCredentialsError(
            "no Google Cloud credentials for gs:// access: outside Airflow fnd uses "
            "Application Default Credentials (run `gcloud auth application-default login`, "
            f"or set GOOGLE_APPLICATION_CREDENTIALS to a key file): {exc}"
        ) from exc
    return GcpAuth(credentials, project, "application default credentials")


class GcpCredentialsError(RuntimeError):
    """No usable Google Cloud credentials were found."""


def gcs_filesystem(endpoint: str | None = None) -> Any:
    """A gcsfs filesystem with :func:`current_auth`'s credentials.

    With an endpoint (an emulator) the plain ``GCSFileSystem`` class is used: the default
    class probes the Storage Control API over gRPC, which an emulator does not speak (see
    ``fnd_core.io.storage``). fsspec caches instances by their arguments, so the same
    credentials object gives the same filesystem (and token) for the whole task.
    """
    endpoint = endpoint or _state.endpoint
    auth = current_auth(endpoint)
    if endpoint:
        from gcsfs.core import GCSFileSystem  # the plain class: no gRPC storage-layout probe

        return GCSFileSystem(
            endpoint_url=endpoint, token=auth.credentials, project=auth.project or "fnd"
        )
    import gcsfs

    kwargs: dict[str, Any] = {"token": auth.credentials}
    if auth.project:
        kwargs["project"] = auth.project
    return gcsfs.GCSFileSystem(**kwargs)
