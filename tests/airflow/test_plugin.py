"""The fnd monitoring plugin inside Airflow's own API server app, with Airflow's own auth.

Airflow's API app is built from the plugins folder ``plugins/`` (as ``airflow api-server``
does); tokens come from the SimpleAuthManager's login endpoint ``POST /auth/token``. Pages are
checked against real state built with ``tests/helpers.py``: demo files ingested (one with
bad rows, one rejected), two tiny models promoted in turn, every post scored.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import sqlalchemy as sa
from markupsafe import escape

from fnd_core.ingest.load import BatchRejectedError, ingest_file
from fnd_core.observe import drift
from fnd_core.pipeline import scoring
from fnd_core.settings import Settings
from fnd_core.stack.demo import generate_batch
from tests.airflow.conftest import DAGS_DIR, REPO
from tests.helpers import ingest_demo, promote_tiny

pytestmark = pytest.mark.airflow

PLUGINS_DIR = REPO / "plugins"
USERS = "viewer:viewer"
PAGES = ["/fnd/data-quality", "/fnd/models", "/fnd/scores"]
JSON_ENDPOINTS = ["/fnd/api/validations", "/fnd/api/models", "/fnd/api/scores"]
DATA_TABLES = (
    "predictions, scoring_errors, model_versions, quarantine, validation_runs, posts, "
    "sweep_candidates, sweeps"
)


@pytest.fixture(scope="module")
def fnd_home(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("plugin") / "fnd_home"


@pytest.fixture(scope="module")
def airflow_app(airflow_db, db_url: str, fnd_home: Path):
    """Airflow's API app (core) with the plugins folder ``plugins/`` and fnd's env set."""
    from airflow import plugins_manager, settings
    from airflow.api_fastapi.app import create_app

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", USERS)
        mp.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS", "False")
        mp.setenv("FND_HOME", str(fnd_home))
        mp.setenv("FND_DATABASE_URL", db_url)
        mp.setenv("AIRFLOW_CONN_FND_DB", db_url.replace("+psycopg2", ""))
        mp.setattr(settings, "PLUGINS_FOLDER", str(PLUGINS_DIR))
        mp.syspath_prepend(str(PLUGINS_DIR))  # Airflow puts its plugins folder on sys.path
        _forget_plugins(plugins_manager)
        yield create_app(apps="core")
    _forget_plugins(plugins_manager)


def _forget_plugins(plugins_manager) -> None:
    for cached in (
        plugins_manager._get_plugins,
        plugins_manager._get_ui_plugins,
        plugins_manager.get_fastapi_plugins,
        plugins_manager.get_flask_plugins,
    ):
        cached.cache_clear()


@pytest.fixture(scope="module")
def client(airflow_app):
    from fastapi.testclient import TestClient

    with TestClient(airflow_app) as c:
        yield c


@pytest.fixture(scope="module")
def token(client, airflow_db: Path) -> str:
    """A JWT from Airflow's own login endpoint, for the user ``viewer``."""
    passwords = json.loads(
        (airflow_db / "simple_auth_manager_passwords.json.generated").read_text()
    )
    response = client.post(
        "/auth/token", json={"username": "viewer", "password": passwords["viewer"]}
    )
    assert response.status_code == 201, response.text
    return response.json()["access_token"]


@pytest.fixture(scope="module")
def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def built(engine, db_url: str, fnd_home: Path) -> dict:
    """Real state: three files ingested (one with bad rows, one rejected), two champions."""
    with engine.begin() as conn:
        conn.exec_driver_sql(f"truncate fnd.{DATA_TABLES.replace(', ', ', fnd.')}, "
                             "fnd.ingest_batches restart identity cascade")  # fmt: skip
    settings = Settings(home=fnd_home, database_url=db_url, nested_selection=False)
    good = ingest_demo(engine, settings, 100, seed=21)
    mixed = _ingest_with_bad_rows(engine, settings)
    rejected = _ingest_rejected(engine, settings)
    first = promote_tiny(engine, settings, epochs=2)
    _score_all(engine, settings)
    # the second with the choice among kinds estimated nested (the default; off in tests)
    second = promote_tiny(engine, replace(settings, nested_selection=True), epochs=2)
    _score_all(engine, settings)
    report = drift.measure(engine, settings, kind="batch", subject=str(good["batch_id"]))
    drift.record(engine, report, "tests")
    return {
        "sweep": _sweep_without_training(engine, settings),
        "good": good,
        "mixed": mixed,
        "rejected": rejected,
        "previous": first,
        "champion": second,
    }


def _sweep_without_training(engine, settings: Settings) -> dict:
    """A model search over two linear kinds, chosen but not trained (no new version)."""
    from fnd_core.pipeline import retrain, sweep
    from fnd_core.pipeline.sweep_space import parse_space

    settings = replace(settings, model_preset="tiny", train_epochs=2, cv_repeats=1)
    kinds = {"kind": {"values": ["linear", "text_linear"]}}
    space = parse_space({"version": 1, "method": "grid", "parameters": kinds})
    snap = retrain.snapshot(engine)
    started = sweep.start(engine, settings, snap, space, budget=2, run_id="plugin-tests")
    for candidate in started["candidates"]:
        sweep.evaluate_candidate(engine, settings, snap, started["sweep_id"], candidate)
    return sweep.select(engine, settings, snap, started["sweep_id"])


def _ingest_with_bad_rows(engine, settings: Settings) -> dict:
    """A demo file plus three bad rows: two without an image file, one with blank text."""
    batch = generate_batch(Path(settings.landing), 20, seed=22)
    bad = [
        {"id": "bad-1", "text": "a caption", "image": "images/nowhere.jpg"},
        {"id": "bad-2", "text": "another", "image": "images/nowhere-either.jpg"},
        {"id": "bad-3", "text": "   ", "image": "images/s22-000000.jpg"},
    ]
    with open(batch.data_file, "a", encoding="utf-8") as f:
        f.writelines(json.dumps(row) + "\n" for row in bad)
    return ingest_file(engine, str(batch.data_file), settings).to_json()


def _ingest_rejected(engine, settings: Settings) -> dict:
    landing = Path(settings.landing)
    landing.mkdir(parents=True, exist_ok=True)
    path = landing / "broken.jsonl"
    path.write_text('{"id": "x1"}\n{"id": "x2", "text": "t"}\n')
    with pytest.raises(BatchRejectedError) as err:
        ingest_file(engine, str(path), settings)
    return err.value.report.to_json()


def _score_all(engine, settings: Settings) -> None:
    work = scoring.plan(engine, n_shards=1)
    scoring.score_shard(engine, settings, model_version=work["model_version"], shard=0, n_shards=1)


# Loading ------------------------------------------------------------------------------


def test_plugin_loads_with_its_app_and_views(airflow_app):
    from airflow import plugins_manager

    plugins, errors = plugins_manager._get_plugins()
    assert not [path for path in errors if str(PLUGINS_DIR) in path], errors
    [info] = [p for p in plugins_manager.get_plugin_info() if p["name"] == "fnd_monitoring"]
    assert [a["url_prefix"] for a in info["fastapi_apps"]] == ["/fnd", "/fnd-assets"]
    views = {v["name"]: v for v in info["external_views"]}
    assert {"Data quality", "Models", "Scores", "fnd"} <= set(views)
    assert views["fnd"]["destination"] == "dag_run" and "{RUN_ID}" in views["fnd"]["href"]
    assert all(not v["href"].startswith("/") for v in views.values())  # base-URL relative
    # fnd_plugin/.airflowignore: the package's modules are not also loaded as top-level
    # modules named after their files ("app", "models"...).
    for name in (
        "app",
        "models",
        "quality",
        "scores",
        "web",
        "files",
        "charts",
        "backend",
        "docs_offline",
    ):
        assert str(PLUGINS_DIR) not in str(getattr(sys.modules.get(name), "__file__", ""))


def test_loading_the_plugin_builds_no_app():
    """Airflow loads plugins in every task: importing ours must not pull in its web app."""
    code = (
        f"import sys; sys.path.insert(0, {str(PLUGINS_DIR)!r}); import fnd_monitoring; "
        "heavy = ('fnd_plugin.app', 'fastapi.templating', 'fnd_core.observe.monitoring', "
        "'fnd_core.observe.monitoring_quality', 'fnd_core.observe.monitoring_models', "
        "'fnd_core.observe.monitoring_scores'); "
        "print(sorted(m for m in heavy if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_airflow_lists_the_plugin_views_for_the_ui(client, auth):
    response = client.get("/api/v2/plugins", headers=auth)
    assert response.status_code == 200
    [plugin] = [p for p in response.json()["plugins"] if p["name"] == "fnd_monitoring"]
    assert {v["url_route"] for v in plugin["external_views"]} == {
        "fnd-data-quality",
        "fnd-models",
        "fnd-scores",
        "fnd-run",
    }


# Auth ---------------------------------------------------------------------------------

ALL_ROUTES = [
    *PAGES,
    *JSON_ENDPOINTS,
    "/fnd/",
    "/fnd/run?dag_id=fnd_ingest&run_id=x",
    "/fnd/data-quality/batches/1",
    "/fnd/api/batches/1/quarantine",
    "/fnd/data-docs/index.html",
    "/fnd/models/m1/plots/roc_test.png",
    "/fnd/images/" + "0" * 64 + ".jpg",
]


@pytest.mark.parametrize("path", ALL_ROUTES)
def test_anonymous_requests_are_refused(client, path):
    assert client.get(path, follow_redirects=False).status_code == 401


@pytest.mark.parametrize("path", ["/fnd/scores", "/fnd/api/models"])
def test_forged_token_is_refused(client, token, path):
    header, payload, _ = token.split(".")
    forged = f"{header}.{payload}.c2lnbmF0dXJl"
    response = client.get(path, headers={"Authorization": f"Bearer {forged}"})
    assert response.status_code == 403


@pytest.mark.parametrize("path", PAGES + JSON_ENDPOINTS)
def test_token_from_airflow_login_opens_every_page(client, auth, path):
    response = client.get(path, headers=auth)
    assert response.status_code == 200, response.text


def test_ui_cookie_works_like_the_bearer_header(airflow_app, token):
    """In the UI, the pages load in an iframe that sends Airflow's ``_token`` cookie."""
    from fastapi.testclient import TestClient

    with TestClient(airflow_app, cookies={"_token": token}) as browser:
        assert browser.get("/fnd/api/validations").status_code == 200


def test_run_tab_sends_each_dag_to_its_page(client, auth):
    response = client.get(
        "/fnd/run", params={"dag_id": "fnd_retrain", "run_id": "manual__1"}, headers=auth,
        follow_redirects=False,
    )  # fmt: skip
    assert response.status_code == 303
    target = urlsplit(response.headers["location"])
    assert target.path == "/fnd/models" and parse_qs(target.query) == {"run_id": ["manual__1"]}
    other = client.get("/fnd/run", params={"dag_id": "etl", "run_id": "r"}, headers=auth)
    assert other.status_code == 200 and "not one of fnd" in other.text


# Pages on real data ---------------------------------------------------------------------


@pytest.mark.slow
def test_data_quality_page_shows_runs_rules_and_reasons(client, auth, built):
    html = client.get("/fnd/data-quality", headers=auth).text
    assert built["mixed"]["uri"] in html and built["rejected"]["uri"] in html
    assert "image_missing</a> × 2" in html and "text_empty</a> × 1" in html
    assert "threshold" in html  # the rejected file's reason
    assert html.count('href="/fnd/data-docs/validations/posts/') == 3
    api = client.get(
        "/fnd/api/validations", params={"success": "false", "suite": "posts"}, headers=auth
    ).json()
    # GX sees every row read, bad ones included: both files with bad rows fail the suite.
    assert {v["source_uri"] for v in api["items"]} == {
        built["rejected"]["uri"],
        built["mixed"]["uri"],
    }
    # The drift check's GX run on the champion's verdicts is listed beside them.
    outputs = client.get("/fnd/api/validations", params={"suite": "model_outputs"}, headers=auth)
    assert [v["batch_name"] for v in outputs.json()["items"]] == [
        f"batch-{built['good']['batch_id']}"
    ]


@pytest.mark.slow
def test_batch_page_pages_through_raw_rows_of_one_rule(client, auth, built):
    batch_id = built["mixed"]["batch_id"]
    first = client.get(
        f"/fnd/data-quality/batches/{batch_id}",
        params={"rule": "image_missing", "limit": 1},
        headers=auth,
    ).text
    assert "<td>bad-1</td>" in first and "<td>bad-2</td>" not in first  # one row a page
    assert (
        f"/fnd/data-quality/batches/{batch_id}?rule=image_missing&amp;limit=1&amp;offset=1" in first
    )
    rows = client.get(
        f"/fnd/api/batches/{batch_id}/quarantine", params={"offset": 1, "limit": 1}, headers=auth
    ).json()
    assert rows["total"] == 3 and json.loads(rows["items"][0]["raw"])["id"] == "bad-2"
    assert client.get("/fnd/api/batches/999999", headers=auth).status_code == 404


@pytest.mark.slow
@pytest.mark.parametrize(
    ("params", "said"),
    [
        ({"offset": -1}, "offset"),
        ({"offset": "ten"}, "offset"),
        ({"offset": 10**30}, "offset"),
        ({"offset": 4}, "beyond the 3 row(s)"),
        ({"limit": 0}, "limit"),
        ({"limit": 501}, "limit"),
        ({"limit": "1.5"}, "limit"),
    ],
)
def test_bad_offsets_and_limits_answer_400_with_what_was_wrong(client, auth, built, params, said):
    batch_id = built["mixed"]["batch_id"]
    for path in (
        f"/fnd/api/batches/{batch_id}/quarantine",
        f"/fnd/data-quality/batches/{batch_id}",
    ):
        response = client.get(path, params=params, headers=auth)
        assert response.status_code == 400, response.text
        assert said in response.json()["detail"]
    for path in ("/fnd/api/validations", "/fnd/api/models", "/fnd/data-quality", "/fnd/models"):
        if "beyond" not in said:
            assert client.get(path, params=params, headers=auth).status_code == 400
    far = client.get("/fnd/api/validations", params={"offset": 100_000}, headers=auth)
    assert far.status_code == 400 and "beyond" in far.json()["detail"]


@pytest.mark.slow
def test_pages_stay_small_whatever_a_quarantined_row_held(client, auth, built, engine):
    """A row quarantined whole before excerpts existed (10 MB): pages and the API answer with a
    bounded cut of it and its real length."""
    import sqlalchemy as sa

    batch_id = built["rejected"]["batch_id"]
    with engine.begin() as conn:
        conn.execute(
            sa.text("insert into fnd.quarantine (batch_id, row_number, rule, reason, raw) "
                    "values (:b, 999, 'parse_error', :why, :raw)"),
            {"b": batch_id, "why": "w" * 100_000, "raw": "x" * 10_000_000},
        )  # fmt: skip
    try:
        api = client.get(
            f"/fnd/api/batches/{batch_id}/quarantine", params={"limit": 500}, headers=auth
        )
        page = client.get(f"/fnd/data-quality/batches/{batch_id}", headers=auth)
        assert api.status_code == page.status_code == 200
        assert len(api.content) < 100_000 and len(page.content) < 200_000
        [row] = [r for r in api.json()["items"] if r["row_number"] == 999]
        assert row["raw_n_bytes"] == 10_000_000 and len(row["raw"]) <= 4096
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text("delete from fnd.quarantine where row_number = 999"))


@pytest.mark.slow
def test_data_docs_are_served_from_their_folder_only(client, auth, built, fnd_home):
    [run] = client.get(
        "/fnd/api/validations", params={"batch_id": built["good"]["batch_id"]}, headers=auth
    ).json()["items"]
    page = client.get(run["data_docs_url"], headers=auth)
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    csp = page.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "sandbox allow-scripts" in csp
    (fnd_home / "secret.txt").write_text("not for the web")
    for attempt in (
        "../secret.txt",
        "%2e%2e/secret.txt",
        "/etc/passwd",
        "validations/../../secret.txt",
    ):
        response = client.get(f"/fnd/data-docs/{attempt}", headers=auth)
        assert response.status_code == 404 and "not for the web" not in response.text


@pytest.mark.slow
def test_data_docs_pages_load_their_assets_from_the_plugin(client, auth, built):
    """Every CDN asset GX asks for is rewritten to the plugin's copy, byte-identical to the
    release the manifest pins; nothing external is left on the page."""
    import hashlib
    import re

    from fnd_plugin import docs_offline

    [run] = client.get(
        "/fnd/api/validations", params={"batch_id": built["good"]["batch_id"]}, headers=auth
    ).json()["items"]
    html = client.get(run["data_docs_url"], headers=auth).text
    loads = re.findall(r'<(?:script|link|img)\b[^>]*\b(?:src|href)="([^"]+)"', html)
    assert loads and all(u.startswith("/fnd-assets/") for u in loads), loads
    assert "amazonaws.com" not in html and "/fnd-assets/gx/images/logo-long.png" in html
    libraries = [u for u in loads if u.startswith("/fnd-assets/lib/")]
    assert len(libraries) >= 12, libraries
    pinned = docs_offline.manifest()["files"]
    for url in libraries:  # public: the sandboxed page's loads carry no Airflow cookie
        response = client.get(url)
        relative = url.removeprefix("/fnd-assets/lib/")
        assert response.status_code == 200, url
        assert response.headers["access-control-allow-origin"] == "*"
        assert hashlib.sha256(response.content).hexdigest() == pinned[relative], url
    assert client.get("/fnd-assets/gx/images/favicon.ico").status_code == 200
    for attempt in ("lib/manifest.json", "lib/../files.py", "lib/vega-5.33.1/LICENSE",
                    "lib/nope.js", "gx/images/..%2f..%2fview.py", "gx/images/nope.png",
                    "data-docs/index.html"):  # fmt: skip
        assert client.get(f"/fnd-assets/{attempt}").status_code == 404, attempt
    assert client.get(run["data_docs_url"]).status_code == 401  # the pages themselves: users


def test_vendored_assets_are_the_releases_gx_names():
    """The files on disk match the manifest, and the two GX loads with SRI hashes match them."""
    import base64
    import hashlib

    from fnd_plugin import docs_offline

    pinned = docs_offline.manifest()["files"]
    for relative, sha in pinned.items():
        assert hashlib.sha256((docs_offline.ASSETS / relative).read_bytes()).hexdigest() == sha
    for folder in {relative.split("/")[0] for relative in pinned}:
        assert (docs_offline.ASSETS / folder / "LICENSE").is_file(), folder
    sri = {  # the integrity attributes in GX's js_script_imports.j2
        "popper.js-1.12.9/popper.min.js": (
            "ApNbgh9B+Y1QKtv3Rn7W3mgPxhU9K/ScQsAP7hUibX39j7fakFPskvXusvfa0b4Q"
        ),
        "bootstrap-4.3.1/bootstrap.min.js": (
            "JjSmVgyd0p3pXB1rRibZUAYoIIy6OrQ6VrjIEaFf/nJGzIxFDsf4x0xIM+B07jRM"
        ),
    }
    for relative, expected in sri.items():
        digest = hashlib.sha384((docs_offline.ASSETS / relative).read_bytes()).digest()
        assert base64.b64encode(digest).decode() == expected


@pytest.mark.slow
def test_models_page_shows_the_leaderboard_gate_and_plots(client, auth, built):
    html = client.get("/fnd/models", headers=auth).text
    assert built["champion"] in html and built["previous"] in html
    assert "forced by tests" in html and "compared with" in html
    api = client.get("/fnd/api/models", headers=auth).json()
    champion = next(m for m in api["items"] if m["version"] == built["champion"])
    assert champion["status"] == "champion" and champion["gate_decision"] == "promote"
    assert champion["gate_metric"] == "balanced_accuracy" and 0 <= champion["gate_estimate"] <= 1
    assert champion["leak"]["groups_straddling_folds"] == 0
    assert champion["compared_with"] == built["previous"]  # its recipe, on the same folds
    assert (champion["cv_folds"], champion["cv_repeats"]) == (5, 3)  # the default settings
    assert "5×3 folds" in html
    assert champion["gate_counted_by"] == "posts"  # what a hold-out counts; stories beside it
    assert champion["gate_estimate_by_post"] == champion["gate_estimate"]
    assert f"each story once {champion['gate_estimate_by_story']:.3f}" in html
    assert champion["gate_split_policy"] == "topic_disjoint" and champion["kind"] in html
    low, high = champion["gate_interval_low"], champion["gate_interval_high"]
    assert low <= champion["gate_estimate"] <= high and f"90 % interval {low:.3f}" in html
    assert set(champion["selection"]["estimates"]) >= {champion["kind"]}
    nested = champion["selection"]["nested"]
    assert f"the choice, nested: <strong>{nested['estimate']:.3f}</strong>" in html
    assert f"against {nested['naive']:.3f} naive" in html
    real = champion["class_support"]["real"]  # how broad the estimate's real side is
    assert real["scored_stories"] <= real["stories"] and real["scored_topics"] <= real["topics"]
    assert f"real: {real['stories']:,} stories in {real['topics']} topic" in html
    assert f"{champion['leak']['n_groups']} leak groups" in html and "text baseline" in html
    names = {p["name"] for p in champion["plots"]}
    assert {"roc_test.png", "confusion_test.png"} <= names  # out of fold
    # epochs to draw only for a fusion head (the linear kinds and char n-grams are exact fits)
    assert ("training_curves.png" in names) == (champion["kind"] == "fusion")
    plot = client.get(champion["plots"][0]["url"], headers=auth)
    assert plot.headers["content-type"] == "image/png" and plot.content[:4] == b"\x89PNG"
    assert f'src="{champion["plots"][0]["url"]}"' in html  # the champion's plots are shown
    missing = client.get(f"/fnd/models/{built['champion']}/plots/model.png", headers=auth)
    assert missing.status_code == 404


@pytest.mark.slow
def test_models_page_shows_each_sweep_sorted_with_the_curse_and_a_plot_per_parameter(
    client, auth, built
):
    html = client.get("/fnd/models", headers=auth).text
    sweep = built["sweep"]
    assert f"<code>{sweep['sweep_id']}</code>" in html
    table = html[html.index(sweep["sweep_id"]) :]
    assert table.index("kind <b>linear</b>") >= 0 and "kind <b>text_linear</b>" in table
    nested = sweep["nested"]
    assert f"its own estimate {sweep['naive']:.3f}" in table
    assert f"nested <strong>{nested['estimate']:.3f}</strong>" in table
    assert "the winner's curse" in table
    assert 'aria-label="Estimate against kind"' in table  # the one parameter it varied


@pytest.mark.slow
def test_models_page_shows_the_champion_in_production(client, auth, built, engine):
    """Estimate beside realized per week, and the calibration curve. The champion scored only
    posts labelled when they landed: every verdict is hindsight, none is counted or estimated."""
    from fnd_core.observe.performance import estimate_weeks

    estimate_weeks(engine, model_version=built["champion"])
    html = client.get("/fnd/models", headers=auth).text
    section = html[html.index(f"{built['champion']} in production") : html.index("Model searches")]
    assert section.count("<svg") == 2
    assert "Balanced accuracy per week" in section and "no labels after the verdicts yet" in section
    with engine.connect() as conn:
        n, hindsight, labelled, estimate = conn.execute(sa.text(
            "select n_verdicts, n_hindsight, n_labelled, estimated_balanced_accuracy::float8 "
            "from fnd.realized_performance where model_version = :v"), {"v": built["champion"]}
        ).one()  # fmt: skip
    assert (n, hindsight, labelled) == (120, 120, 0)  # 100 + 20 demo posts, labelled on landing
    assert estimate is None  # nothing to estimate: every verdict was given knowing its label
    row = section[section.index("<tbody>") : section.index("</tbody>")]
    assert ">120<" in row and row.count("—") >= 2


@pytest.mark.slow
def test_scores_page_draws_charts_and_lists_fake_posts(client, auth, built):
    response = client.get("/fnd/scores", headers=auth)
    html = response.text
    external = html.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "http://" not in external and "https://" not in external  # nothing from elsewhere
    assert html.count("<svg") == 4 and built["champion"] in html and built["previous"] in html
    assert "Drift against the champion" in html
    assert f"/fnd/data-quality/batches/{built['good']['batch_id']}" in html  # the batch's report
    assert "default-src 'none'" in response.headers["content-security-policy"]
    data = client.get("/fnd/api/scores", params={"days": 7}, headers=auth).json()
    days = data["daily"]["days"]
    # UTC days up to the newest post's. Seed 21's 100 posts start 2024-01-22 00:00 UTC, one
    # every ~15 min: 96 on the 22nd (the last, s21-000095, at 23:56 UTC), 4 on the 23rd, with
    # seed 22's 20 posts (from 2024-01-23 00:00 UTC). Every post is scored by the champion.
    assert [d["day"] for d in days] == [f"2024-01-{n}" for n in range(17, 24)]
    assert [(d["n_posts"], d["n_scored"]) for d in days] == [(0, 0)] * 5 + [(96, 96), (24, 24)]
    assert [d["fake_share"] for d in days[:5]] == [None] * 5
    for d in days[5:]:  # the view rounds to 4 places
        assert d["fake_share"] == pytest.approx(d["n_fake"] / d["n_scored"], abs=5e-5)
    assert data["daily"]["champion"] == built["champion"]
    assert data["comparison"]["n_posts"] == 120  # every post, scored by both champions
    [report] = data["drift"]
    assert (report["kind"], report["subject"]) == ("batch", str(built["good"]["batch_id"]))
    assert report["n_posts"] == 100 and report["train_fake_share"] is not None
    assert report["unseen_image_share"] == 0.0  # these posts were training posts themselves
    flagged = data["flagged"]["items"]
    assert flagged and all(p["p_fake"] >= p["threshold"] for p in flagged)
    assert str(escape(flagged[0]["text"])) in html
    # evidence: each verdict's nearest labelled picture, never the post's own
    assert all(p["match_post_id"] not in (None, p["post_id"]) for p in flagged)
    assert "Picture seen before" in html and "/64 bits apart" in html
    # novelty: beside each verdict, and its distribution per run (the champion's one run)
    [run] = data["novelty"]["runs"]
    assert (run["run_id"], run["n_posts"], run["n_measured"]) == ("cli", 120, 120)
    assert sum(b["cli"] for b in data["novelty"]["bins"]) == 120 and 0 <= run["median"] <= 100
    assert all(0 <= p["novelty"] <= 100 for p in flagged)
    assert "Novelty: how far each run lay" in html and "run cli" in html


@pytest.mark.slow
def test_thumbnails_are_resized_on_the_server(client, auth, built):
    from PIL import Image

    post = client.get("/fnd/api/scores", headers=auth).json()["flagged"]["items"][0]
    response = client.get(post["thumbnail_url"], headers=auth)
    assert response.headers["content-type"] == "image/jpeg"
    assert max(Image.open(io.BytesIO(response.content)).size) <= 160
    sha = post["image_sha256"]
    assert client.get(f"/fnd/images/{sha}.jpg?size=5000", headers=auth).status_code == 400
    assert client.get(f"/fnd/images/{'f' * 64}.jpg", headers=auth).status_code == 404


# Files and charts -----------------------------------------------------------------------


@pytest.fixture
def plugin_modules(monkeypatch):
    monkeypatch.syspath_prepend(str(PLUGINS_DIR))
    from fnd_plugin import charts, files

    return charts, files


def test_data_docs_paths_cannot_leave_their_folder(plugin_modules, tmp_path):
    _, files = plugin_modules
    docs = tmp_path / "docs"
    (docs / "validations").mkdir(parents=True)
    (docs / "validations" / "run.html").write_text("<html>")
    (tmp_path / "secret.txt").write_text("secret")
    (docs / "validations" / "link.html").symlink_to(tmp_path / "secret.txt")
    assert files.data_docs_file(docs, "validations/run.html").read_text() == "<html>"
    for bad in ("", "../secret.txt", "/etc/passwd", "validations/link.html", "validations"):
        with pytest.raises(files.NotServable):
            files.data_docs_file(docs, bad)


def test_pages_prefer_a_read_only_login_when_one_is_defined(plugin_modules, db_url, monkeypatch):
    from fnd_plugin import backend

    settings = Settings(database_url=db_url)
    tasks = "postgresql://fnd@db.internal:5432/fnd"
    monkeypatch.setenv("AIRFLOW_CONN_FND_DB", tasks)
    monkeypatch.delenv("AIRFLOW_CONN_FND_DB_READ", raising=False)
    assert backend.fnd_database_url(settings).startswith("postgresql+psycopg2://fnd@db.internal")
    monkeypatch.setenv("AIRFLOW_CONN_FND_DB_READ", "postgresql://fnd_ui@db.internal:5432/fnd")
    assert backend.fnd_database_url(settings).startswith("postgresql+psycopg2://fnd_ui@")


def test_thumbnails_refuse_images_over_the_pixel_limit(plugin_modules):
    from PIL import Image

    _, files = plugin_modules
    buffer = io.BytesIO()
    Image.new("RGB", (400, 200), (200, 10, 10)).save(buffer, format="PNG")
    small = Image.open(io.BytesIO(files.thumbnail(buffer.getvalue(), 96, max_pixels=10**6)))
    assert (small.format, small.size) == ("JPEG", (96, 48))
    with pytest.raises(files.NotServable, match="over the limit"):
        files.thumbnail(buffer.getvalue(), 96, max_pixels=1000)
    with pytest.raises(files.NotServable, match="not a readable image"):
        files.thumbnail(b"<html>", 96, max_pixels=1000)


def test_charts_are_self_contained_svg_with_escaped_labels(plugin_modules):
    charts, _ = plugin_modules
    days = [
        {"day": "2024-03-01", "n_posts": 40, "n_fake": 10, "fake_share": 0.25},
        {"day": "2024-03-02", "n_posts": 0, "n_fake": 0, "fake_share": None},
    ]
    svg = charts.daily_chart(days)
    assert svg.startswith("<svg") and svg.endswith("</svg>") and svg.count("<rect") == 4
    assert "2024-03-01: 40 posts, 10 flagged fake (25.0% of scored)" in svg
    bins = [{"lo": 0.0, "hi": 0.5, "a": 3, "b": 1}, {"lo": 0.5, "hi": 1.0, "a": 1, "b": 3}]
    svg = charts.histogram_chart(bins, [("a", "<script>x</script>"), ("b", "previous")])
    assert "<script>" not in svg and "&lt;script&gt;" in svg and svg.count("<rect") == 4
    empty = [{**b, "a": 0} for b in bins]
    assert "nothing scored yet" in charts.histogram_chart(empty, [("a", "champion")])
    assert "no posts yet" in charts.daily_chart([])


# Failure alerts ---------------------------------------------------------------------------


class RecordingNotifier:
    """A notifier configured by class path, as FND_ALERT_NOTIFIER names one."""

    alerts: list[str] = []

    def __init__(self, **kwargs) -> None:
        self.kwargs = kwargs

    def __call__(self, context) -> None:
        RecordingNotifier.alerts.append(context["fnd_alert_text"])


def test_every_fnd_task_has_the_failure_alert(airflow_db):
    from airflow.dag_processing.dagbag import DagBag

    from fnd_airflow.dag_support import on_task_failure

    bag = DagBag(dag_folder=str(DAGS_DIR))
    for dag in bag.dags.values():
        for task in dag.tasks:
            callbacks = task.on_failure_callback
            callbacks = callbacks if isinstance(callbacks, list) else [callbacks]
            assert on_task_failure in callbacks, f"{dag.dag_id}.{task.task_id}"


@pytest.mark.slow
def test_a_rejected_file_alerts_with_its_file_and_rules(airflow_db, fnd_env, monkeypatch):
    from airflow.dag_processing.dagbag import DagBag

    monkeypatch.setenv("FND_ALERT_NOTIFIER", f"{__name__}.RecordingNotifier")
    RecordingNotifier.alerts.clear()
    landing = fnd_env / "landing"
    landing.mkdir(parents=True)
    (landing / "junk.jsonl").write_text('{"id": "a"}\n{"id": "b"}\n{"text": "no id"}\n')

    dag = DagBag(dag_folder=str(DAGS_DIR / "fnd_ingest.py")).dags["fnd_ingest"]
    run = dag.test()

    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert states["ingest_file"] == "failed"
    [alert, run_alert] = RecordingNotifier.alerts  # the file's task, then the run's last task
    assert "check_nothing_set_aside" in run_alert and "junk.jsonl" in run_alert
    assert alert.startswith("[fnd] file junk.jsonl rejected")
    assert f"file: {landing / 'junk.jsonl'}" in alert
    assert "quarantine rules: text_missing ×2, id_missing ×1" in alert
    assert "threshold" in alert
