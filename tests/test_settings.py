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
