"""Local stand-ins for Google Cloud, for tests only: real HTTP servers on loopback.

- :func:`gcs_emulator`: gcp-storage-emulator (the GCS JSON API, in memory).
- :class:`TokenStandIn`: the OAuth 2.0 token endpoint a service-account key's ``token_uri``
  names. It checks each JWT grant's RS256 signature against the keys the test made and
  answers an access token naming the account; so the test knows which key, hence which
  Airflow connection, every token was minted for.
- :class:`VertexStandIn`: a *stand-in* for the Vertex AI REST API, ``customJobs`` create / get
  / cancel only. It records each request (body and Authorization) and "runs" the job: the
  container spec's ``fnd ARGS`` are run as ``python -m fnd_core.stack.cli ARGS`` here, with the
  job's environment, in place of the image on a Vertex AI machine. It is not Vertex AI: no
  scheduling, quotas, images or accelerators; it checks the request's shape only.

Fake service-account keys (:func:`service_account_key`) are real RSA keys made per test.
"""

from __future__ import annotations

import base64
import contextlib
import http.server
import json
import logging
import os
import re
import socket
import subprocess
import sys
import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


@contextlib.contextmanager
def gcs_emulator(bucket: str) -> Iterator[str]:
    """gcp-storage-emulator on a free port with ``bucket``; yields its endpoint URL."""
    from gcp_storage_emulator.server import create_server

    logging.getLogger("gcp_storage_emulator").setLevel(logging.WARNING)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = create_server("127.0.0.1", port, in_memory=True, default_bucket=bucket)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


def service_account_key(email: str, project: str, token_uri: str) -> tuple[dict, Any]:
    """A service-account key file's content with a fresh RSA key, and its public key."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    key = {
        "type": "service_account",
        "project_id": project,
        "private_key_id": f"key-{email.split('@')[0]}",
        "private_key": pem,
        "client_email": email,
        "client_id": "1",
        "token_uri": token_uri,
    }
    return key, private.public_key()


def _b64(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def jwt_claims(token: str, public_keys: dict[str, Any]) -> dict:
    """The claims of an RS256 JWT whose signature one of ``public_keys`` (by email) verifies."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    head, body, sig = token.split(".")
    claims = json.loads(_b64(body))
    key = public_keys[claims["iss"]]
    key.verify(_b64(sig), f"{head}.{body}".encode(), padding.PKCS1v15(), hashes.SHA256())
    return claims


def _serve(handler: type[http.server.BaseHTTPRequestHandler]) -> http.server.ThreadingHTTPServer:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


class _Quiet(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def _json(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))


class TokenStandIn:
    """OAuth token endpoint: verifies JWT grants, records who asked, mints tokens."""

    def __init__(self) -> None:
        self.public_keys: dict[str, Any] = {}
        self.grants: list[str] = []  # client_email of every verified grant, in order
        stand_in = self

        class Handler(_Quiet):
            def do_POST(self):  # noqa: N802
                form = urllib.parse.parse_qs(self._body().decode())
                try:
                    claims = jwt_claims(form["assertion"][0], stand_in.public_keys)
                except Exception as exc:  # noqa: BLE001 — any bad grant is refused
                    self._json(400, {"error": "invalid_grant", "error_description": str(exc)})
                    return
                stand_in.grants.append(claims["iss"])
                token = f"standin-token.{claims['iss']}"
                self._json(200, {"access_token": token, "expires_in": 3600, "token_type": "Bearer"})

        self.server = _serve(Handler)
        self.uri = f"http://127.0.0.1:{self.server.server_port}/token"

    def key(self, email: str, project: str) -> dict:
        """A key file for ``email`` whose grants this stand-in accepts."""
        key, public = service_account_key(email, project, self.uri)
        self.public_keys[email] = public
        return key

    def caller(self, authorization: str | None) -> str | None:
        """The account behind an ``Authorization: Bearer`` header (a minted token or a
        self-signed JWT, which Google's clients also send), or None."""
        token = (authorization or "").removeprefix("Bearer ").strip()
        if token.startswith("standin-token."):
            return token.removeprefix("standin-token.")
        with contextlib.suppress(Exception):
            return jwt_claims(token, self.public_keys)["iss"]
        return None

    def close(self) -> None:
        self.server.shutdown()


@dataclass
class StandInJob:
    name: str
    body: dict
    caller: str | None
    process: subprocess.Popen | None = None
    output: str = ""
    cancelled: bool = False
    done: threading.Event = field(default_factory=threading.Event)

    def state(self) -> str:
        if self.cancelled:
            return "JOB_STATE_CANCELLED"
        if not self.done.is_set():
            return "JOB_STATE_RUNNING"
        return "JOB_STATE_SUCCEEDED" if self.process.returncode == 0 else "JOB_STATE_FAILED"


class VertexStandIn:
    """A stand-in for the Vertex AI REST API's customJobs create / get / cancel."""

    _JOBS = re.compile(r"^/v1/(projects/[^/]+/locations/[^/]+)/customJobs$")
    _JOB = re.compile(r"^/v1/(projects/[^/]+/locations/[^/]+/customJobs/\d+)(:cancel)?$")

    def __init__(self, tokens: TokenStandIn, job_home: Path) -> None:
        self.jobs: dict[str, StandInJob] = {}
        self.tokens = tokens
        self.job_home = job_home  # the job's FND_HOME: a container's disk is its own
        stand_in = self

        class Handler(_Quiet):
            def do_POST(self):  # noqa: N802
                body = self._body()
                caller = stand_in.tokens.caller(self.headers.get("Authorization"))
                if caller is None:
                    self._json(401, {"error": {"code": 401, "message": "no valid credentials"}})
                    return
                if m := stand_in._JOBS.match(self.path.split("?")[0]):
                    self._json(200, stand_in.create(m.group(1), json.loads(body), caller))
                elif (m := stand_in._JOB.match(self.path.split("?")[0])) and m.group(2):
                    stand_in.cancel(m.group(1))
                    self._json(200, {})
                else:
                    self._json(404, {"error": {"code": 404, "message": self.path}})

            def do_GET(self):  # noqa: N802
                m = stand_in._JOB.match(self.path.split("?")[0])
                if stand_in.tokens.caller(self.headers.get("Authorization")) is None:
                    self._json(401, {"error": {"code": 401, "message": "no valid credentials"}})
                elif m and m.group(1) in stand_in.jobs:
                    self._json(200, stand_in.resource(stand_in.jobs[m.group(1)]))
                else:
                    self._json(404, {"error": {"code": 404, "message": "no such job"}})

        self.server = _serve(Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_port}"

    def create(self, parent: str, body: dict, caller: str) -> dict:
        name = f"{parent}/customJobs/{1000 + len(self.jobs)}"
        job = self.jobs[name] = StandInJob(name=name, body=body, caller=caller)
        threading.Thread(target=self._run, args=(job,), daemon=True).start()
        return self.resource(job) | {"state": "JOB_STATE_PENDING"}

    def _run(self, job: StandInJob) -> None:
        """The container's ``fnd ARGS``, run here with the job's environment."""
        container = job.body["jobSpec"]["workerPoolSpecs"][0]["containerSpec"]
        assert container["command"] == ["fnd"], container["command"]
        # The job sees only what its spec gives it: none of this process's fnd, Airflow or
        # emulator variables, so a setting the spec forgot to forward is missed here too.
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("FND_", "AIRFLOW", "STORAGE_EMULATOR_HOST"))
        }
        env |= {e["name"]: e["value"] for e in container.get("env", [])}
        env["FND_HOME"] = str(self.job_home)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
        job.process = subprocess.Popen(
            [sys.executable, "-m", "fnd_core.stack.cli", *container["args"]],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        job.output, _ = job.process.communicate()
        job.done.set()

    def cancel(self, name: str) -> None:
        job = self.jobs[name]
        job.cancelled = True
        if job.process and job.process.poll() is None:
            job.process.kill()

    def resource(self, job: StandInJob) -> dict:
        state = job.state()
        out = {**job.body, "name": job.name, "state": state}
        if state == "JOB_STATE_FAILED":
            out["error"] = {"code": 13, "message": f"fnd train failed: {job.output[-2000:]}"}
        return out

    def close(self) -> None:
        for job in self.jobs.values():
            if job.process and job.process.poll() is None:
                job.process.kill()
        self.server.shutdown()
