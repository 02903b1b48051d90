"""Deployment files, checked without a Docker engine (there is none here).

docker-compose.yaml, the Dockerfile and .dockerignore cannot be run on this machine, so these
tests check by construction what would break a deployment: a missing service or file, services
on different images, the GPU worker not reserving a GPU or not taking the `gpu` queue, fnd's
database shared with Airflow's, an image that installs something other than what `make install`
installs. The two helper scripts in docker/ are run for real: the postgres init script against
the test server, the airflow-init script with stand-ins for the `airflow` and `fnd` commands.
"""

from __future__ import annotations

import fnmatch
import importlib
import json
import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
import textwrap
import tomllib
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml
from sqlalchemy.engine import make_url

from fnd_core.io import migrations
from fnd_core.io.db import make_engine
from fnd_core.settings import Settings

REPO = Path(__file__).resolve().parent.parent
COMPOSE_FILE = REPO / "docker-compose.yaml"
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
DEPLOY_DOC = REPO / "docs" / "deploying.md"
AIRFLOW_INIT = REPO / "docker" / "airflow-init.sh"
POSTGRES_INIT_DIR = REPO / "docker" / "postgres-init"

AIRFLOW_SERVICES = {
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-worker",
    "airflow-worker-gpu",
    "airflow-triggerer",
    "airflow-init",
    "airflow-cli",
    "flower",
}
SERVICES = AIRFLOW_SERVICES | {"postgres", "redis"}
CELERY_WORKERS = ("airflow-worker", "airflow-worker-gpu")


# Compose interpolation --------------------------------------------------------------------
_VARIABLE = re.compile(
    r"\$(?:(?P<escaped>\$)|\{(?P<name>\w+)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}|(?P<bare>\w+))"
)


def interpolate(text: str, environ: dict[str, str]) -> str:
    """``text`` with compose's ``${VAR}``, ``${VAR:-default}`` and ``$$`` rules applied."""

    def substitute(m: re.Match) -> str:
        if m["escaped"]:
            return "$"
        name = m["name"] or m["bare"]
        value, op = environ.get(name), m["op"]
        if op in (":-", ":?") and value == "":
            value = None
        if value is not None:
            return value
        if op and op.endswith("?"):
            raise ValueError(f"compose needs ${name}: {m['arg']}")
        return m["arg"] if op else ""

    return _VARIABLE.sub(substitute, text)


def resolve(node, environ: dict[str, str]):
    """A parsed compose node with every string interpolated."""
    if isinstance(node, dict):
        return {k: resolve(v, environ) for k, v in node.items()}
    if isinstance(node, list):
        return [resolve(v, environ) for v in node]
    return interpolate(node, environ) if isinstance(node, str) else node


def variables_read(text: str) -> set[str]:
    """Names of the variables a compose file interpolates."""
    return {m["name"] or m["bare"] for m in _VARIABLE.finditer(text) if not m["escaped"]}


def generated_secrets() -> dict[str, str]:
    """The .env docker/make-env.sh prints (a real run of the script)."""
    out = subprocess.run(
        ["bash", str(REPO / "docker" / "make-env.sh")], capture_output=True, text=True, check=True
    ).stdout
    return dict(
        line.split("=", 1) for line in out.splitlines() if line and not line.startswith("#")
    )


SECRETS = generated_secrets()


def load_compose(environ: dict[str, str] | None = None) -> dict:
    """The compose file as compose sees it, with the generated secrets and ``environ`` set."""
    return resolve(yaml.safe_load(COMPOSE_FILE.read_text()), {**SECRETS, **(environ or {})})


@pytest.fixture(scope="module")
def compose() -> dict:
    """docker-compose.yaml with only the generated secrets set (every other default applies)."""
    return load_compose()


def test_compose_refuses_to_start_without_its_secrets():
    text = COMPOSE_FILE.read_text()
    for name in ("AIRFLOW_ADMIN_PASSWORD", "AIRFLOW__API_AUTH__JWT_SECRET", "POSTGRES_PASSWORD",
                 "FND_DB_PASSWORD", "FND_DB_READ_PASSWORD", "FERNET_KEY"):  # fmt: skip
        missing = {k: v for k, v in SECRETS.items() if k != name}
        with pytest.raises(ValueError, match=f"compose needs \\${name}: run ./docker/make-env.sh"):
            resolve(yaml.safe_load(text), missing)
    assert "PASSWORD:-" not in text and "airflow:airflow@" not in text and "placeholder" not in text


def test_generated_secrets_are_fresh_and_strong():
    from cryptography.fernet import Fernet

    again = generated_secrets()
    assert all(SECRETS[k] != again[k] for k in SECRETS)  # new on every run
    assert len(SECRETS["AIRFLOW__API_AUTH__JWT_SECRET"]) >= 128  # 64 bytes, hex
    passwords = ("POSTGRES_PASSWORD", "FND_DB_PASSWORD", "FND_DB_READ_PASSWORD")
    assert min(len(SECRETS[k]) for k in passwords) >= 48
    Fernet(SECRETS["FERNET_KEY"].encode())  # a valid key


def test_the_ui_reads_through_the_read_only_login(compose: dict):
    """The plugin's connection fnd_db_read logs in as fnd_ui (sql/016), whose password
    `fnd db upgrade` in airflow-init sets from the same variable."""
    env = compose["services"]["airflow-apiserver"]["environment"]
    read = make_url(env["AIRFLOW_CONN_FND_DB_READ"])
    assert read.username == "fnd_ui" and read.password == SECRETS["FND_DB_READ_PASSWORD"]
    init = compose["services"]["airflow-init"]["environment"]
    assert init["FND_DB_READ_PASSWORD"] == SECRETS["FND_DB_READ_PASSWORD"]
    assert env["AIRFLOW__CORE__FERNET_KEY"] == SECRETS["FERNET_KEY"]


def test_published_ports_listen_on_this_host_only_by_default(compose: dict):
    for name, service in compose["services"].items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), (name, port)
    exposed = load_compose({"AIRFLOW_API_BIND": "0.0.0.0"})["services"]["airflow-apiserver"]
    assert exposed["ports"] == ["0.0.0.0:8080:8080"]


def service_env(service: dict) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def worker_queues(service: dict) -> set[str]:
    """Queues a `celery worker` command consumes (Airflow's default queue when none is named)."""
    args = shlex.split(service["command"]) if isinstance(service["command"], str) else []
    assert args[:2] == ["celery", "worker"], f"not a Celery worker: {service['command']!r}"
    for flag in ("--queues", "-q"):
        if flag in args:
            return set(args[args.index(flag) + 1].split(","))
    return {"default"}


# Dockerfile parsing -----------------------------------------------------------------------
def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    instructions, pending = [], ""
    for line in text.splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1]
            continue
        full = (pending + line).strip()
        pending = ""
        keyword, _, args = full.partition(" ")
        instructions.append((keyword.upper(), args.strip()))
    return instructions


@pytest.fixture(scope="module")
def dockerfile() -> list[tuple[str, str]]:
    return dockerfile_instructions(DOCKERFILE.read_text())


def copy_sources(instructions: list[tuple[str, str]]) -> list[str]:
    """Build-context paths the COPY instructions read (flags and destination dropped)."""
    sources = []
    for keyword, args in instructions:
        if keyword == "COPY":
            words = [w for w in shlex.split(args) if not w.startswith("--")]
            sources.extend(words[:-1])
    return sources


def pip_installs(commands: list[str], ignore: set[str]) -> list[list[str]]:
    """The arguments of every `pip install` in ``commands``, minus flags in ``ignore``."""
    installs = []
    for command in commands:
        for step in command.split("&&"):
            words = shlex.split(step)
            if "pip" in words and words[words.index("pip") + 1 : words.index("pip") + 2] == [
                "install"
            ]:
                args = words[words.index("pip") + 2 :]
                installs.append([w for w in args if w not in ignore])
    return installs


def makefile_install_commands() -> list[str]:
    """The Makefile's pip commands in the install recipe, `$(PIP)` spelled `pip`."""
    lines = (REPO / "Makefile").read_text().splitlines()
    return [
        line.strip().replace("$(PIP)", "pip")
        for line in lines
        if line.startswith("\t") and "$(PIP) install" in line
    ]


def dockerignore_patterns() -> list[str]:
    return [
        line.strip().lstrip("/")
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]


def is_dockerignored(path: str, patterns: list[str]) -> bool:
    """Whether ``path`` (or a folder holding it) is left out of the build context."""
    parts = Path(path.rstrip("/")).parts
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for pattern in patterns:
        if pattern.startswith("!"):
            raise AssertionError("exceptions (!) are not handled by this check: extend it")
        bare = pattern.removeprefix("**/")
        for prefix in prefixes:
            candidates = [prefix] + ([prefix.rsplit("/", 1)[-1]] if bare != pattern else [])
            if any(fnmatch.fnmatchcase(c, bare) for c in candidates):
                return True
    return False


# docker-compose.yaml ----------------------------------------------------------------------
def test_compose_declares_the_expected_services(compose: dict):
    assert set(compose["services"]) == SERVICES


def test_every_airflow_service_runs_the_one_image(compose: dict):
    common = compose["x-airflow-common"]
    assert common["image"] and common["build"]["context"] == "."
    for name in AIRFLOW_SERVICES:
        service = compose["services"][name]
        assert service["image"] == common["image"], name
        assert service["build"] == common["build"], name
    assert {compose["services"][n]["image"] for n in AIRFLOW_SERVICES} == {"fnd-airflow:3.3.2"}
    for name in SERVICES - AIRFLOW_SERVICES:  # public images, nothing of ours
        assert "build" not in compose["services"][name], name


def test_every_path_the_compose_file_names_exists(compose: dict):
    checked = []
    for name, service in compose["services"].items():
        if "build" in service:
            context = REPO / service["build"]["context"]
            assert (context / service["build"].get("dockerfile", "Dockerfile")).is_file(), name
            checked.append(context)
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0] if isinstance(volume, str) else volume["source"]
            if source.startswith((".", "/")):
                assert (REPO / source).exists(), f"{name} mounts {source}, which does not exist"
                checked.append(REPO / source)
        for env_file in service.get("env_file", []):
            entry = env_file if isinstance(env_file, dict) else {"path": env_file}
            if entry.get("required", True):
                assert (REPO / entry["path"]).is_file(), f"{name} needs {entry['path']}"
    assert REPO / "docker" / "postgres-init" in [p.resolve() for p in checked]


def test_named_volumes_are_declared_and_shared(compose: dict):
    declared = set(compose["volumes"])
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if not source.startswith((".", "/")):
                assert source in declared, f"{name} uses undeclared volume {source}"
    # Landing zone, store and Data Docs: one volume seen by the api-server and every worker.
    fnd_home = service_env(compose["x-airflow-common"])["FND_HOME"]
    for name in ("airflow-apiserver", "airflow-init", *CELERY_WORKERS):
        assert f"fnd-data:{fnd_home}" in compose["services"][name]["volumes"], name


def test_fnd_settings_point_into_the_shared_volume(compose: dict):
    env = service_env(compose["x-airflow-common"])
    known = {f.metadata["env"] for f in Settings.__dataclass_fields__.values()}
    fnd_vars = {k for k in env if k.startswith("FND_")}
    assert fnd_vars <= known, f"unknown fnd settings: {sorted(fnd_vars - known)}"
    settings = Settings.from_env(env)
    for location in (settings.landing, settings.store, str(settings.data_docs)):
        assert Path(location).is_relative_to(env["FND_HOME"]), location


def test_fnd_database_is_separate_from_airflows(compose: dict):
    env = service_env(compose["x-airflow-common"])
    airflow_db = make_url(env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"])
    fnd_db = make_url(env["AIRFLOW_CONN_FND_DB"])
    assert make_url(env["FND_DATABASE_URL"]) == fnd_db  # the CLI and the DAGs agree
    assert (fnd_db.host, fnd_db.port or 5432) == (airflow_db.host, airflow_db.port or 5432)
    assert fnd_db.database != airflow_db.database
    assert fnd_db.username != airflow_db.username
    # The postgres service creates exactly that database and role on its first start.
    pg_env = service_env(compose["services"]["postgres"])
    assert (pg_env["FND_DB_NAME"], pg_env["FND_DB_USER"], pg_env["FND_DB_PASSWORD"]) == (
        fnd_db.database,
        fnd_db.username,
        fnd_db.password,
    )
    assert pg_env["POSTGRES_DB"] == airflow_db.database


def test_fnd_database_follows_its_variables():
    env = service_env(
        load_compose({"FND_DB_NAME": "news", "FND_DB_PASSWORD": "s3cret"})["x-airflow-common"]
    )
    assert env["AIRFLOW_CONN_FND_DB"] == "postgresql://fnd:s3cret@postgres:5432/news"
    assert env["FND_DATABASE_URL"] == env["AIRFLOW_CONN_FND_DB"]


def test_gpu_worker_reserves_an_nvidia_gpu_and_takes_only_the_gpu_queue(compose: dict):
    gpu = compose["services"]["airflow-worker-gpu"]
    assert worker_queues(gpu) == {"gpu"}
    devices = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert any(d["driver"] == "nvidia" and "gpu" in d["capabilities"] for d in devices)
    assert gpu["profiles"] == ["gpu"]  # hosts without an NVIDIA runtime still start the rest
    assert "gpu" not in worker_queues(compose["services"]["airflow-worker"])


@pytest.mark.parametrize(
    ("environ", "worker"),
    [({}, "airflow-worker"), ({"FND_TRAIN_QUEUE": "gpu"}, "airflow-worker-gpu")],
)
def test_the_training_queue_always_has_a_worker(environ: dict, worker: str):
    spec = load_compose(environ)
    queue = service_env(spec["x-airflow-common"])["FND_TRAIN_QUEUE"]
    assert queue in worker_queues(spec["services"][worker])
    if not environ:  # the compose default is fnd's own default
        assert queue == Settings().train_queue


def test_compose_runs_the_executor_fnd_up_runs_with_celery(compose: dict):
    """The same executor, result backend kind and hostname callable as `fnd up --executor
    celery`, so a task's hostname means the same thing in both."""
    from fnd_core.stack.workers import celery_env, worker_hostname

    env = compose["x-airflow-common"]["environment"]
    local = celery_env("postgresql://u@h/airflow", "redis://127.0.0.1:6379/0", concurrency=1)
    for key in ("AIRFLOW__CORE__EXECUTOR", "AIRFLOW__CORE__HOSTNAME_CALLABLE"):
        assert env[key] == local[key]
    assert env["AIRFLOW__CELERY__RESULT_BACKEND"].startswith("db+postgresql://")
    module, _, name = env["AIRFLOW__CORE__HOSTNAME_CALLABLE"].rpartition(".")
    assert getattr(importlib.import_module(module), name) is worker_hostname


def test_auth_manager_is_in_the_lock_and_has_a_login(compose: dict):
    env = service_env(compose["x-airflow-common"])
    module, _, cls = env["AIRFLOW__CORE__AUTH_MANAGER"].rpartition(".")
    assert module.startswith("airflow.api_fastapi."), "FAB is not in requirements.lock"
    import importlib

    assert isinstance(getattr(importlib.import_module(module), cls), type)
    user, role = env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"].split(":")
    init_env = service_env(compose["services"]["airflow-init"])
    assert (init_env["AIRFLOW_ADMIN_USER"], role) == (user, "admin")
    assert init_env["AIRFLOW_ADMIN_PASSWORD"]
    # HS512 signs the tokens between components: PyJWT warns on every one under 64 bytes.
    assert len(env["AIRFLOW__API_AUTH__JWT_SECRET"].encode()) >= 64
    assert compose["services"]["airflow-init"]["user"] == "0:0"


def test_health_checks_match_the_official_file(compose: dict):
    services = compose["services"]
    assert (
        "http://localhost:8080/api/v2/monitor/health"
        in services["airflow-apiserver"]["healthcheck"]["test"]
    )
    assert "http://localhost:8974/health" in services["airflow-scheduler"]["healthcheck"]["test"]
    assert service_env(compose["x-airflow-common"])["AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK"]
    for name in AIRFLOW_SERVICES - {"airflow-init", "airflow-cli"}:
        assert "healthcheck" in services[name], name
        depends = services[name]["depends_on"]
        assert depends["airflow-init"]["condition"] == "service_completed_successfully", name


def test_every_variable_the_compose_file_reads_is_documented():
    documented = DEPLOY_DOC.read_text()
    missing = sorted(v for v in variables_read(COMPOSE_FILE.read_text()) if v not in documented)
    assert not missing, f"docs/deploying.md does not mention {missing}"


def test_docker_compose_accepts_the_file():
    """The real parser, where the docker compose plugin exists (it needs no engine)."""
    docker = shutil.which("docker")
    probe = docker and subprocess.run([docker, "compose", "version"], capture_output=True)
    if not probe or probe.returncode != 0:
        pytest.skip("the docker compose plugin is not installed here")
    result = subprocess.run(
        [docker, "compose", "-f", str(COMPOSE_FILE), "--profile", "*", "config", "--quiet"],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stderr


# Dockerfile and .dockerignore -------------------------------------------------------------
def test_image_is_the_official_airflow_of_the_lock_and_python(dockerfile):
    froms = [args for keyword, args in dockerfile if keyword == "FROM"]
    lock = (REPO / "requirements.lock").read_text()
    airflow_version = re.search(r"(?m)^apache-airflow==(\S+)$", lock)[1]
    requires = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["requires-python"]
    python = re.search(r">=\s*(\d+\.\d+)", requires)[1]
    assert froms == [f"apache/airflow:{airflow_version}-python{python}"]


def test_image_installs_the_lock_the_way_the_makefile_does(dockerfile):
    runs = [args for keyword, args in dockerfile if keyword == "RUN"]
    in_image = pip_installs(runs, ignore={"--no-cache-dir", "apache-airflow==${AIRFLOW_VERSION}"})
    in_makefile = pip_installs(makefile_install_commands(), ignore={"--quiet"})
    assert ["-r", "requirements.lock"] in in_makefile
    assert ["--no-deps", "-e", "."] in in_makefile
    assert in_image == in_makefile


def test_every_copy_source_is_in_the_build_context(dockerfile):
    patterns = dockerignore_patterns()
    sources = copy_sources(dockerfile)
    for required in ("requirements.lock", "pyproject.toml", "fnd_core/", "dags/", "plugins/"):
        assert required in sources
    for source in sources:
        path = REPO / source
        assert path.exists(), f"COPY {source}: not in the repository"
        if path.is_dir():  # git keeps no empty folder: a clean clone would lack it
            assert any(p.is_file() for p in path.rglob("*")), f"COPY {source}: empty folder"
        assert not is_dockerignored(source, patterns), f"COPY {source}: excluded by .dockerignore"


def test_dockerignore_keeps_local_state_and_secrets_out():
    patterns = dockerignore_patterns()
    for path in (".venv", ".fnd", ".git", ".env", "fnd_core/__pycache__", "tests"):
        assert is_dockerignored(path, patterns), path
    assert not is_dockerignored("fnd_core/settings.py", patterns)


def test_seed_weights_are_baked_only_on_request_and_read_offline(dockerfile):
    args = {a.split("=", 1)[0]: a.split("=", 1)[1] for k, a in dockerfile if k == "ARG"}
    assert args["BAKE_SEED_WEIGHTS"] == "false"
    compose_args = yaml.safe_load(COMPOSE_FILE.read_text())["x-airflow-common"]["build"]["args"]
    assert "BAKE_SEED_WEIGHTS" in compose_args
    bake = next(i for i, (k, a) in enumerate(dockerfile) if k == "RUN" and "from_pretrained" in a)
    assert '"${BAKE_SEED_WEIGHTS}" = "true"' in dockerfile[bake][1]
    envs_before = " ".join(a for k, a in dockerfile[:bake] if k == "ENV")
    envs_after = " ".join(a for k, a in dockerfile[bake:] if k == "ENV")
    assert "TORCH_HOME=" in envs_before and "HF_HOME=" in envs_before
    assert "HF_HUB_OFFLINE=1" in envs_after and "HF_HUB_OFFLINE" not in envs_before
    # The repo id baked is one the `seed` preset looks for in the cache.
    from fnd_core.model.encoders.pretrained import DISTILBERT_IDS

    baked = set(re.findall(r"from_pretrained\('([^']+)'\)", dockerfile[bake][1]))
    assert baked and baked <= set(DISTILBERT_IDS)
    assert "IMAGENET1K_V1" in dockerfile[bake][1]


def test_python_snippets_in_the_dockerfile_compile(dockerfile, monkeypatch):
    """`python -c` one-liners are spread over continuation lines: a quoting slip shows here;
    the weights check the image runs calls the check the `seed` preset uses."""
    snippets = []
    for keyword, args in dockerfile:
        words = shlex.split(args) if keyword == "RUN" else []
        snippets += [words[i + 1] for i, w in enumerate(words[:-1]) if w == "-c"]
    assert len(snippets) == 3
    for snippet in snippets:
        compile(snippet, "Dockerfile", "exec")
    from fnd_core.model.encoders import pretrained
    from fnd_core.model.presets import get

    calls = []
    monkeypatch.setattr(pretrained, "require_seed_weights", lambda **kw: calls.append(kw))
    exec(next(s for s in snippets if "require_seed_weights" in s), {})  # noqa: S102
    assert calls == [{}]
    assert get("seed").requires == "fnd_core.model.encoders.pretrained:require_seed_weights"


def test_init_scripts_are_executable_and_parse():
    scripts = [AIRFLOW_INIT, *sorted(POSTGRES_INIT_DIR.glob("*.sh"))]
    assert len(scripts) >= 2
    for script in scripts:
        assert script.stat().st_mode & stat.S_IXUSR, f"{script.name} is not executable"
        result = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
        assert result.returncode == 0, result.stderr


# docker/airflow-init.sh, run with stand-ins for `airflow` and `fnd` -----------------------
def _stub(folder: Path, name: str, log: Path, exit_code: int = 0) -> None:
    script = folder / name
    script.write_text(
        textwrap.dedent(f"""\
            #!/usr/bin/env bash
            echo "{name} $*" >> {shlex.quote(str(log))}
            [[ "$*" == "version" ]] && echo 3.3.2
            exit {exit_code}
            """)
    )
    script.chmod(0o755)


def _run_airflow_init(
    tmp_path: Path, fnd_exit: int = 0
) -> tuple[subprocess.CompletedProcess, dict]:
    bin_dir, log = tmp_path / "bin", tmp_path / "calls.log"
    bin_dir.mkdir()
    _stub(bin_dir, "airflow", log)
    _stub(bin_dir, "fnd", log, exit_code=fnd_exit)
    env = {
        # Stand-ins first; python for the script's JSON step; coreutils for mkdir/stat/chown.
        "PATH": os.pathsep.join(
            [str(bin_dir), str(Path(sys.executable).parent), "/usr/bin", "/bin"]
        ),
        "AIRFLOW_HOME": str(tmp_path / "airflow"),
        "AIRFLOW_UID": str(os.getuid()),
        "AIRFLOW_ADMIN_USER": "ops",
        "AIRFLOW_ADMIN_PASSWORD": 'p"w d',
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(tmp_path / "cfg" / "pw.json"),
        "FND_HOME": str(tmp_path / "fnd"),
        "FND_LANDING_DIR": "gs://bucket/landing",
        "FND_DATA_DOCS_DIR": str(tmp_path / "docs"),
    }
    result = subprocess.run(
        ["bash", str(AIRFLOW_INIT)], env=env, capture_output=True, text=True, cwd=tmp_path
    )
    return result, {"log": log, **env}


def test_airflow_init_migrates_both_databases_then_writes_the_login(tmp_path: Path):
    result, env = _run_airflow_init(tmp_path)
    assert result.returncode == 0, result.stderr
    calls = env["log"].read_text().splitlines()
    assert calls == ["airflow db migrate", "fnd db upgrade", "airflow version"]
    for folder in ("airflow/logs", "cfg", "fnd", "fnd/store", "docs"):
        assert (tmp_path / folder).is_dir(), folder
    assert not any("gs:" in p.name for p in tmp_path.rglob("*"))  # remote: nothing to create
    password_file = Path(env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"])
    assert json.loads(password_file.read_text()) == {"ops": 'p"w d'}
    assert stat.S_IMODE(password_file.stat().st_mode) == 0o660


def test_airflow_init_stops_with_a_hint_when_fnd_migrations_fail(tmp_path: Path):
    result, env = _run_airflow_init(tmp_path, fnd_exit=1)
    assert result.returncode != 0
    assert "docker compose down --volumes" in result.stderr
    assert not Path(env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"]).exists()


# docker/postgres-init, run against the test server ----------------------------------------
def test_postgres_init_creates_a_database_fnd_can_migrate_alone(pg_admin_url: str):
    """The role it creates is no superuser, yet owns fnd's database and applies every migration."""
    if shutil.which("psql") is None:
        pytest.skip("psql is not installed")
    admin_url = make_url(pg_admin_url)
    name = f"fnd_init_{uuid.uuid4().hex[:10]}"
    env = {
        **os.environ,
        "POSTGRES_USER": admin_url.username or "postgres",
        "POSTGRES_DB": admin_url.database or "postgres",
        "PGHOST": str(admin_url.query.get("host") or admin_url.host or "127.0.0.1"),
        "PGPORT": str(admin_url.port or 5432),
        "PGPASSWORD": admin_url.password or "",
        "FND_DB_NAME": name,
        "FND_DB_USER": name,
        "FND_DB_PASSWORD": "it's a secret",
    }
    admin = make_engine(pg_admin_url, isolation_level="AUTOCOMMIT")
    try:
        for script in sorted(POSTGRES_INIT_DIR.glob("*.sh")):
            result = subprocess.run([str(script)], env=env, capture_output=True, text=True)
            assert result.returncode == 0, result.stderr
        with admin.connect() as conn:
            owner = conn.execute(
                sa.text("select pg_get_userbyid(datdba) from pg_database where datname = :n"),
                {"n": name},
            ).scalar()
            is_super = conn.execute(
                sa.text("select rolsuper from pg_roles where rolname = :n"), {"n": name}
            ).scalar()
            admin_of = (
                conn.execute(
                    sa.text(
                        "select r.rolname from pg_auth_members m"
                        " join pg_roles r on r.oid = m.roleid"
                        " where m.member = (select oid from pg_roles where rolname = :n)"
                        " and m.admin_option order by 1"
                    ),
                    {"n": name},
                )
                .scalars()
                .all()
            )
        assert (owner, is_super) == (name, False)
        # The cluster-wide roles exist whoever made them first, and fnd's role administers them
        # (what PostgreSQL 16 requires to comment on and grant a role another role created).
        assert admin_of == ["fnd_analyst", "fnd_reader", "fnd_ui"]
        fnd_url = admin_url.set(username=name, password="it's a secret", database=name)
        engine = make_engine(fnd_url.render_as_string(hide_password=False))
        try:
            applied = migrations.upgrade(engine)
        finally:
            engine.dispose()
        assert applied == [m.filename for m in migrations.discover()]
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'drop database if exists "{name}" with (force)')
            conn.exec_driver_sql(f'drop role if exists "{name}"')
        admin.dispose()
