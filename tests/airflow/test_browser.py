"""The Airflow UI in a real browser: log in, see the three DAGs, open a finished run.

Headless Debian chromium driven by selenium + chromedriver (`make browser-deps` installs them).
Screenshots go to test-artifacts/ at the repository root, for people and CI artefacts.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from urllib.parse import quote

import pytest

from fnd_core.contracts import PIPELINE_DAGS as DAG_IDS
from fnd_core.stack.airflow_rest import wait_for_run

pytest_plugins = ["tests.airflow.live_stack"]
pytestmark = [pytest.mark.airflow, pytest.mark.slow]

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
WAIT_S = 60


def _missing() -> str | None:
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (.venv/bin/pip install selenium)"
    for path in (CHROMIUM, CHROMEDRIVER):
        if not path.exists():
            return f"{path} is missing (make browser-deps installs chromium chromium-driver)"
    return None


@pytest.fixture(scope="module")
def browser():
    if reason := _missing():
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="fnd-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--no-first-run", f"--user-data-dir={profile}", "--window-size=1440,1000",
    ):  # fmt: skip
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # console: CSP reports
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(WAIT_S)
    ARTIFACTS.mkdir(exist_ok=True)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


def _wait_text(driver, *texts: str, timeout: float = WAIT_S) -> None:
    """Wait until every text is visible on the page (the UI renders client-side)."""
    from selenium.webdriver.support.ui import WebDriverWait

    def shown(d):
        body = d.find_element("tag name", "body").text
        return all(t in body for t in texts)

    try:
        WebDriverWait(driver, timeout, poll_frequency=0.5).until(shown)
    except Exception:
        driver.save_screenshot(str(ARTIFACTS / "failure.png"))
        raise


def _log_in(driver, live_stack) -> None:
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(live_stack.url + "/")
    # "/" redirects to the login page in the browser: a look-up made while it navigates is
    # aborted ("aborted by navigation"); look again until the field is there.
    username = WebDriverWait(driver, WAIT_S, ignored_exceptions=(WebDriverException,)).until(
        ec.visibility_of_element_located((By.NAME, "username"))
    )
    driver.save_screenshot(str(ARTIFACTS / "01-login.png"))
    username.send_keys(live_stack.client.username)
    driver.find_element(By.NAME, "password").send_keys(live_stack.client.password)
    driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    WebDriverWait(driver, WAIT_S).until(lambda d: "/auth/login" not in d.current_url)


def _finished_run(client) -> tuple[str, dict]:
    """A finished run to look at: retraining's if one succeeded, else any (made if need be)."""
    for dag_id in ("fnd_retrain", "fnd_score", "fnd_ingest"):
        if runs := client.dag_runs(dag_id, states=["success"]):
            return dag_id, runs[-1]
    run = client.trigger("fnd_ingest", client.form_conf("fnd_ingest"))
    return "fnd_ingest", wait_for_run(client, "fnd_ingest", run["dag_run_id"], timeout_s=300)


def test_log_in_see_the_dags_open_a_run(browser, live_stack):
    _log_in(browser, live_stack)

    browser.get(live_stack.url + "/dags")
    _wait_text(browser, *DAG_IDS)
    browser.save_screenshot(str(ARTIFACTS / "02-dags.png"))

    dag_id, run = _finished_run(live_stack.client)
    browser.get(f"{live_stack.url}/dags/{dag_id}/runs/{quote(run['dag_run_id'], safe='')}")
    _wait_text(browser, dag_id, run["dag_run_id"])
    body = browser.find_element("tag name", "body").text
    assert "success" in body.lower(), body[:2000]
    browser.save_screenshot(str(ARTIFACTS / "03-run.png"))


@pytest.mark.parametrize(
    ("path", "texts", "shot"),
    [
        ("/fnd/data-quality", ("Data quality", "posts"), "04-data-quality.png"),
        ("/fnd/models", ("Models", "champion"), "05-models.png"),
        ("/fnd/scores", ("Scores", "Posts per day and fake share"), "06-scores.png"),
        ("/fnd/scores#drift", ("Drift against the champion",), "07-drift.png"),
    ],
)
def test_plugin_pages_render_for_a_logged_in_user(browser, live_stack, path, texts, shot):
    """The monitoring plugin's pages, with the UI's own login (its `_token` cookie)."""
    if browser.get_cookie("_token") is None:
        _log_in(browser, live_stack)
    browser.get(live_stack.url + path)
    _wait_text(browser, *texts)
    browser.save_screenshot(str(ARTIFACTS / shot))


def test_data_docs_render_styled_with_no_internet(browser, live_stack):
    """A GX Data Docs page, sandboxed, styled by the plugin's copies of the CDN assets."""
    import json

    if browser.get_cookie("_token") is None:
        _log_in(browser, live_stack)
    browser.get(live_stack.url + "/fnd/api/validations?limit=1")
    [run] = json.loads(browser.find_element("tag name", "body").text)["items"]
    browser.get_log("browser")  # drop what earlier pages logged
    browser.get(live_stack.url + run["data_docs_url"])
    _wait_text(browser, "Overview")
    loaded = browser.execute_script(
        "return {jquery: typeof window.jQuery, table: typeof (window.jQuery || {}).fn, "
        "vega: typeof window.vegaEmbed, origin: window.origin, "
        "navbar: getComputedStyle(document.querySelector('nav.navbar')).position, "
        "external: [...document.querySelectorAll('script[src], link[href]')]"
        ".map(e => e.src || e.href).filter(u => !u.startsWith(location.origin))}"
    )
    browser.save_screenshot(str(ARTIFACTS / "08-data-docs.png"))
    problems = [e["message"] for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert problems == [], (problems, loaded)
    assert loaded["jquery"] == "function" and loaded["vega"] == "function", loaded
    assert loaded["navbar"] == "sticky", loaded  # Bootstrap's sticky-top: the CSS is there
    assert loaded["external"] == [] and loaded["origin"] == "null", loaded  # sandboxed
