"""Settings: defaults, parsing from FND_* variables, masking of secrets."""

from __future__ import annotations

from pathlib import Path

import pytest

from fnd_core.settings import Settings, mask_secrets


def test_defaults_are_relative_to_home():
    s = Settings.from_env({})
    assert s.home == Path(".fnd")
    assert s.database_url is None
    assert s.landing == str(Path(".fnd") / "landing")
    assert s.store == str(Path(".fnd") / "store")
    assert s.data_docs == Path(".fnd") / "data_docs"


def test_values_are_parsed_to_their_types():
    s = Settings.from_env(
        {
            "FND_HOME": "/srv/fnd",
            "FND_BATCH_SIZE": "64",
            "FND_GATE_MIN_ACCURACY": "0.9",
            "FND_LANDING_DIR": "gs://bucket/landing",
            "FND_SCORE_SHARDS": "",  # empty keeps the default
        }
    )
    assert s.home == Path("/srv/fnd")
    assert s.batch_size == 64
    assert s.gate_min_accuracy == pytest.approx(0.9)
    assert s.landing == "gs://bucket/landing"
    assert s.score_shards == Settings().score_shards


def test_bad_value_names_the_variable():
    with pytest.raises(ValueError, match="FND_BATCH_SIZE='many'"):
        Settings.from_env({"FND_BATCH_SIZE": "many"})


def test_describe_masks_passwords():
    s = Settings(database_url="postgresql://fnd:s3cret@db:5432/fnd")
    shown = dict((name, value) for name, value, _ in s.describe())
    assert "s3cret" not in shown["FND_DATABASE_URL"]
    assert shown["FND_DATABASE_URL"] == "postgresql://fnd:***@db:5432/fnd"


def test_mask_secrets_leaves_passwordless_urls():
    assert mask_secrets("postgresql://postgres@127.0.0.1/test") == (
        "postgresql://postgres@127.0.0.1/test"
    )


@pytest.mark.parametrize(
    ("raw", "masked"),
    [
        ("postgresql://u:pa@ss@db:5432/fnd", "postgresql://u:***@db:5432/fnd"),
        ("redis://:s3cret@127.0.0.1:6379/0", "redis://:***@127.0.0.1:6379/0"),
        ("postgresql://u@db/fnd?password=hunter2&sslmode=require",
         "postgresql://u@db/fnd?password=***&sslmode=require"),
        ("gs://bucket/a@b/c.jpg", "gs://bucket/a@b/c.jpg"),
        ("http://host:8080/a@b", "http://host:8080/a@b"),
    ],
)  # fmt: skip
def test_mask_secrets_handles_at_signs_and_query_strings(raw, masked):
    assert mask_secrets(raw) == masked


# One source of truth: defaults live in Settings, everything else derives them --------------
def test_every_copy_of_a_default_agrees_with_settings():
    import json

    from fnd_core.model.config import DEFAULT_MAX_PIXELS, PRESETS
    from fnd_core.observe.drift_policy import DriftPolicy
    from fnd_core.pipeline.gate import GatePolicy
    from fnd_core.resources import EXPECTATIONS_DIR

    defaults = Settings()
    assert PRESETS == ("offline", "seed", "tiny")
    assert DEFAULT_MAX_PIXELS == defaults.max_image_pixels == 40_000_000
    gate = GatePolicy()
    assert (gate.min_accuracy, gate.tolerance, gate.min_class_recall, gate.baseline_margin,
            gate.metric) == (0.65, 0.01, 0.5, 0.01, "balanced_accuracy")  # fmt: skip
    assert (gate.min_accuracy, gate.metric) == (defaults.gate_min_accuracy, defaults.gate_metric)
    drift = DriftPolicy()
    assert drift == DriftPolicy.from_settings(defaults)
    # The GX suites need a default for each $PARAMETER; fnd passes the settings' values at run
    # time, and the defaults in the JSON must say the same.
    posts = json.loads((EXPECTATIONS_DIR / "posts.json").read_text())["suite_parameters"]
    assert posts["max_text_chars"] == defaults.max_text_chars == 5000
    assert posts["max_image_pixels"] == defaults.max_image_pixels
    outputs = json.loads((EXPECTATIONS_DIR / "model_outputs.json").read_text())
    assert outputs["suite_parameters"]["max_undecided_share"] == defaults.drift_undecided_share


def test_default_names_a_setting():
    from fnd_core.settings import default

    assert default("train_epochs") == 40
    with pytest.raises(KeyError, match="no setting named 'epochs'"):
        default("epochs")


def test_the_configuration_page_lists_every_setting_with_its_default():
    """docs/configuration.md is where users look a setting up: each one is there, with the
    default Settings holds (secrets and derived paths aside)."""
    import dataclasses

    from fnd_core.settings import Settings

    page = (Path(__file__).resolve().parents[1] / "docs" / "configuration.md").read_text()
    rows = {}
    for line in page.splitlines():
        if line.startswith("| `FND_"):
            default = line.split("|")[2].strip()
            for env in line.split("|")[1].replace("`", "").split(","):
                rows[env.strip()] = default.split("`")[1] if "`" in default else default
    for f in dataclasses.fields(Settings):
        env = f.metadata["env"]
        assert env in rows, f"{env} is missing from docs/configuration.md"
        if isinstance(f.default, bool | int | float):
            shown = str(f.default).lower() if isinstance(f.default, bool) else str(f.default)
            assert rows[env].replace(",", "") in {shown, shown.rstrip("0").rstrip(".")}, env
