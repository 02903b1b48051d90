"""GX suites on small fixture frames: what passes, what fails and by how much, Data Docs."""

from __future__ import annotations

import json
import logging
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

from fnd_core.ingest import quality
from fnd_core.settings import Settings

EXPECTATIONS = Path(__file__).resolve().parents[1] / "expectations"
SUITES = ("posts", "training_set")

NOT_NULL = "expect_column_values_to_not_be_null"
UNIQUE = "expect_column_values_to_be_unique"
BETWEEN = "expect_column_values_to_be_between"
IN_SET = "expect_column_values_to_be_in_set"
CONTAINS = "expect_column_distinct_values_to_contain_set"
MEAN = "expect_column_mean_to_be_between"
ROWS = "expect_table_row_count_to_be_between"
UNIQUE_COUNT = "expect_column_unique_value_count_to_be_between"


def posts_frame(n: int = 8) -> pd.DataFrame:
    """A clean landing batch as the ingest parser emits it."""
    labels = [0, 1, None, 1] * (n // 4) + [0] * (n % 4)
    raw = {0: "real", 1: "fake", None: None}
    return pd.DataFrame(
        {
            "post_id": [f"t3_{i:04d}" for i in range(n)],
            "text": [f"caption number {i}" for i in range(n)],
            "text_length": [len(f"caption number {i}") for i in range(n)],
            "image_ok": [True] * n,
            "image_pixels": [640 * 480] * n,
            "created_at": pd.to_datetime([f"2021-05-{1 + i % 28:02d}" for i in range(n)]),
            "label": pd.array(labels, dtype="Int64"),
            "label_raw": [raw[v] for v in labels],
        }
    )


def training_frame(n: int = 120) -> pd.DataFrame:
    """A balanced snapshot of 30 leak groups."""
    return pd.DataFrame(
        {
            "post_id": [f"t3_{i:04d}" for i in range(n)],
            "text": [f"caption {i}" for i in range(n)],
            "image_sha256": [f"{i:064x}" for i in range(n)],
            "label": [i % 2 for i in range(n)],
            "leak_group": [i % 30 for i in range(n)],
        }
    )


def validate(df: pd.DataFrame, suite: str = "posts", **kwargs) -> quality.ValidationSummary:
    kwargs.setdefault("data_docs_dir", None)
    kwargs.setdefault("batch_name", "fixture")
    return quality.validate_frame(df, suite, expectations_dir=EXPECTATIONS, **kwargs)


def failures(summary: quality.ValidationSummary) -> dict[tuple[str, str | None], int | None]:
    """Failed expectations as {(type, column): unexpected_count}."""
    keys = [(r.expectation_type, r.column) for r in summary.results]
    assert len(keys) == len(set(keys)), "the (type, column) key must identify one expectation"
    return {(r.expectation_type, r.column): r.unexpected_count for r in summary.failed}


# Suites -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", SUITES)
def test_suite_json_loads_and_builds_in_gx(name: str) -> None:
    config = quality.load_suite_config(EXPECTATIONS, name)
    suite = quality.build_suite(config)
    assert suite.name == name
    assert len(suite.expectations) == len(config["expectations"])
    assert config["suite_parameters"], "thresholds should be parameters with defaults"


def test_suite_defaults_match_settings_and_the_brief() -> None:
    posts = quality.load_suite_config(EXPECTATIONS, "posts")["suite_parameters"]
    training = quality.load_suite_config(EXPECTATIONS, "training_set")["suite_parameters"]
    assert posts["max_text_chars"] == Settings().max_text_chars == 5000
    assert posts["max_image_pixels"] == Settings().max_image_pixels
    assert training["min_rows"] == 100


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not valid JSON"),
        ('{"name": "other", "expectations": [{"type": "expect_x"}]}', "'name' must be"),
        ('{"name": "s", "expectations": []}', "non-empty list"),
        ('{"name": "s", "expectations": [{"kwargs": {}}]}', "needs a 'type'"),
        (
            '{"name": "s", "expectations": [{"type": "expect_table_row_count_to_be_between",'
            ' "kwargs": {"min_value": {"$PARAMETER": "n"}}}]}',
            "without a default",
        ),
    ],
)
def test_malformed_suite_files_are_refused_readably(
    tmp_path: Path, content: str, message: str
) -> None:
    (tmp_path / "s.json").write_text(content)
    with pytest.raises(ValueError, match=message):
        quality.load_suite_config(tmp_path, "s")


def test_unknown_suite_and_bad_names_are_refused() -> None:
    with pytest.raises(ValueError, match="no suite 'nope'"):
        quality.load_suite_config(EXPECTATIONS, "nope")
    with pytest.raises(ValueError, match="letters, digits"):
        quality.load_suite_config(EXPECTATIONS, "../posts")


# posts --------------------------------------------------------------------------------------


def test_clean_posts_frame_passes() -> None:
    df = posts_frame(40)
    summary = validate(df)
    assert summary.success, summary.failed
    assert summary.evaluated_rows == 40
    assert summary.statistics["unsuccessful_expectations"] == 0
    assert summary.statistics["evaluated_expectations"] == len(summary.results) > 5
    assert summary.data_docs_path is None
    assert summary.gx_version.startswith("1.")


def _set(**cells: dict[int, object]) -> Callable[[pd.DataFrame], None]:
    """A mutation that writes {row: value} into each named column."""

    def mutate(df: pd.DataFrame) -> None:
        for column, values in cells.items():
            for row, value in values.items():
                df.loc[row, column] = value

    return mutate


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        pytest.param(_set(post_id={1: None, 5: None}), {(NOT_NULL, "post_id"): 2}, id="null-ids"),
        pytest.param(
            _set(post_id={1: "t3_0000", 2: "t3_0000"}), {(UNIQUE, "post_id"): 3}, id="dup-ids"
        ),
        pytest.param(
            _set(text={3: ""}, text_length={3: 0}), {(BETWEEN, "text_length"): 1}, id="empty-text"
        ),
        pytest.param(
            _set(text_length={2: 5001, 4: 9000}), {(BETWEEN, "text_length"): 2}, id="long-text"
        ),
        pytest.param(
            _set(text={6: None}, text_length={6: None}), {(NOT_NULL, "text"): 1}, id="null-text"
        ),
        pytest.param(
            _set(image_ok={0: False, 7: False}, image_pixels={0: None, 7: None}),
            {(IN_SET, "image_ok"): 2},
            id="bad-images",
        ),
        pytest.param(
            _set(image_pixels={2: 50_000_000}), {(BETWEEN, "image_pixels"): 1}, id="huge-image"
        ),
        pytest.param(
            _set(label={1: None}, label_raw={1: "maybe"}), {(NOT_NULL, "label"): 1}, id="maybe"
        ),
        pytest.param(_set(label={0: 2}), {(IN_SET, "label"): 1}, id="label-2"),
        pytest.param(
            _set(created_at={4: pd.Timestamp("1970-01-01")}),
            {(BETWEEN, "created_at"): 1},
            id="epoch-zero",
        ),
    ],
)
def test_broken_posts_fail_exactly_the_right_expectations(
    mutate: Callable[[pd.DataFrame], None], expected: dict
) -> None:
    df = posts_frame(8)
    mutate(df)
    summary = validate(df)
    assert not summary.success
    assert failures(summary) == expected


def test_unlabelled_rows_and_missing_times_are_allowed() -> None:
    df = posts_frame(8)
    df["label"] = pd.array([None] * 8, dtype="Int64")
    df["label_raw"] = None
    df.loc[2, "created_at"] = pd.NaT
    assert validate(df).success


def test_timezone_aware_times_are_compared_in_utc() -> None:
    df = posts_frame(8)
    df["created_at"] = df["created_at"].dt.tz_localize("UTC")
    assert validate(df).success
    df.loc[3, "created_at"] = pd.Timestamp("1999-12-31 23:00", tz="UTC")
    summary = validate(df)
    assert failures(summary) == {(BETWEEN, "created_at"): 1}
    assert summary.failed[0].partial_unexpected_values == ("1999-12-31T23:00:00",)
    assert df["created_at"].dt.tz is not None, "the caller's frame is left as it was"


def test_missing_column_is_reported_not_raised() -> None:
    summary = validate(posts_frame(8).drop(columns=["image_ok"]))
    failed = {r.expectation_type: r for r in summary.failed}
    assert "expect_table_columns_to_match_set" in failed
    assert "image_ok" in (failed[IN_SET].error or "")


def test_parameters_override_suite_defaults() -> None:
    df = posts_frame(8)
    df.loc[2, "text_length"] = 6000
    assert failures(validate(df)) == {(BETWEEN, "text_length"): 1}
    relaxed = validate(df, parameters={"max_text_chars": 10_000})
    assert relaxed.success
    assert relaxed.parameters["max_text_chars"] == 10_000
    assert relaxed.parameters["max_image_pixels"] == 40_000_000, "other defaults stay"
    strict = validate(posts_frame(8), parameters={"max_text_chars": 5})
    assert failures(strict) == {(BETWEEN, "text_length"): 8}


def test_settings_feed_the_posts_parameters() -> None:
    params = quality.posts_parameters(Settings(max_text_chars=10, max_image_pixels=100))
    summary = validate(posts_frame(8), parameters=params)
    assert failures(summary) == {(BETWEEN, "text_length"): 8, (BETWEEN, "image_pixels"): 8}


def test_unknown_parameter_is_an_error() -> None:
    with pytest.raises(ValueError, match=r"unknown suite parameter\(s\) \['max_txt_chars'\]"):
        validate(posts_frame(8), parameters={"max_txt_chars": 1})


def test_empty_batch_name_is_an_error() -> None:
    with pytest.raises(ValueError, match="batch_name"):
        validate(posts_frame(8), batch_name=" ")


def test_summary_is_small_json_with_truncated_values() -> None:
    df = posts_frame(8)
    long_id = "x" * 500
    df.loc[0, "post_id"] = long_id
    df.loc[1, "post_id"] = long_id
    df.loc[2, "label"] = None
    df.loc[2, "label_raw"] = "maybe"
    payload = json.loads(json.dumps(validate(df, batch_name="b1").to_json(), allow_nan=False))
    assert payload["suite"] == "posts" and payload["batch_name"] == "b1"
    assert payload["success"] is False and payload["evaluated_rows"] == 8
    assert set(payload["statistics"]) == {
        "evaluated_expectations",
        "successful_expectations",
        "unsuccessful_expectations",
        "success_percent",
    }
    by_key = {(r["expectation_type"], r["column"]): r for r in payload["results"]}
    dup = by_key[(UNIQUE, "post_id")]
    assert dup["unexpected_count"] == 2 and dup["unexpected_percent"] == 25.0
    assert all(len(v) <= 80 for v in dup["partial_unexpected_values"])
    assert by_key[(NOT_NULL, "label")]["partial_unexpected_values"] == [None]
    assert by_key[(BETWEEN, "text_length")]["kwargs"] == {"min_value": 1, "max_value": 5000}


# training_set -------------------------------------------------------------------------------


def test_clean_training_set_passes() -> None:
    summary = validate(training_frame(), "training_set")
    assert summary.success, summary.failed


def test_training_set_with_one_class_fails_balance_and_presence() -> None:
    df = training_frame()
    df["label"] = 1
    found = failures(validate(df, "training_set"))
    assert set(found) == {(CONTAINS, "label"), (MEAN, "label")}


def test_training_set_imbalance_is_bounded_by_parameters() -> None:
    df = training_frame(100)
    df["label"] = [1 if i < 85 else 0 for i in range(100)]
    assert set(failures(validate(df, "training_set"))) == {(MEAN, "label")}
    assert validate(df, "training_set", parameters={"max_fake_share": 0.9}).success


def test_training_set_with_too_few_rows_fails_unless_lowered() -> None:
    df = training_frame(40)
    assert set(failures(validate(df, "training_set"))) == {(ROWS, None)}
    assert validate(df, "training_set", parameters={"min_rows": 40}).success


def test_training_set_with_fewer_leak_groups_than_folds_fails() -> None:
    df = training_frame()
    df["leak_group"] = df["leak_group"] % 4  # 4 stories, 5 folds by default
    assert set(failures(validate(df, "training_set"))) == {(UNIQUE_COUNT, "leak_group")}
    assert validate(df, "training_set", parameters={"min_groups": 4}).success


def test_training_set_null_labels_and_duplicates_fail() -> None:
    df = training_frame()
    df["label"] = df["label"].astype("Int64")
    df.loc[0, "label"] = None
    df.loc[2, "post_id"] = df.loc[1, "post_id"]
    df.loc[3, "image_sha256"] = "not-a-hash"
    found = failures(validate(df, "training_set"))
    assert found == {
        (NOT_NULL, "label"): 1,
        (UNIQUE, "post_id"): 2,
        ("expect_column_values_to_match_regex", "image_sha256"): 1,
    }


# Data Docs ----------------------------------------------------------------------------------


def test_data_docs_page_for_the_run(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    summary = validate(posts_frame(8), data_docs_dir=docs, batch_name="landing-2024-05-01.jsonl")
    page = summary.data_docs_path
    assert page is not None and page.is_file()
    assert page.is_relative_to(docs.absolute()) and page.suffix == ".html"
    assert "landing-2024-05-01.jsonl" in page.read_text(encoding="utf-8")
    assert (docs / "index.html").is_file()
    assert (docs / "expectations" / "posts.html").is_file()
    assert quality.gx_dir_for(docs) == tmp_path / "gx"
    assert summary.to_json()["data_docs_path"] == str(page)


def test_the_docs_templates_compile_once_per_process(tmp_path: Path, monkeypatch) -> None:
    """The site's views share one Jinja bytecode cache (fnd_core.ingest.docs_views): a second
    site renders its pages, the same as the first's, without compiling a template again."""
    import jinja2

    compiled: list[str] = []
    compile_ = jinja2.Environment.compile

    def counting(self, source, name=None, filename=None, raw=False, defer_init=False):
        compiled.append(str(name))
        return compile_(self, source, name, filename, raw, defer_init)

    validate(posts_frame(8), data_docs_dir=tmp_path / "a", batch_name="first.jsonl")
    monkeypatch.setattr(jinja2.Environment, "compile", counting)
    summary = validate(posts_frame(8), data_docs_dir=tmp_path / "b", batch_name="second.jsonl")
    assert compiled == []  # every template came from the cache
    page = summary.data_docs_path
    assert page is not None and "second.jsonl" in page.read_text(encoding="utf-8")
    assert (tmp_path / "b" / "index.html").is_file()
    assert (tmp_path / "b" / "expectations" / "posts.html").is_file()


def test_batch_names_with_path_characters_get_a_safe_page(tmp_path: Path) -> None:
    summary = validate(posts_frame(8), data_docs_dir=tmp_path / "d", batch_name="in/a b?.csv")
    assert summary.batch_name == "in/a b?.csv"
    assert summary.data_docs_path is not None and summary.data_docs_path.is_file()
    assert "in_a_b_.csv" in summary.data_docs_path.read_text(encoding="utf-8")


@pytest.mark.slow
def test_docs_site_accumulates_runs_of_both_suites(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    first = validate(posts_frame(8), data_docs_dir=docs, batch_name="batch-one")
    broken = posts_frame(8)
    broken.loc[0, "image_ok"] = False
    second = validate(broken, data_docs_dir=docs, batch_name="batch-two")
    third = validate(training_frame(), "training_set", data_docs_dir=docs, batch_name="snap")
    pages = [s.data_docs_path for s in (first, second, third)]
    assert len(set(pages)) == 3
    assert all(p is not None and p.is_file() for p in pages)
    index = (docs / "index.html").read_text(encoding="utf-8")
    for name in ("batch-one", "batch-two", "snap"):
        assert name in index
    assert (docs / "expectations" / "posts.html").is_file(), "a posts page survives other runs"


@pytest.mark.slow
def test_docs_retention_drops_the_oldest_runs_results_and_pages(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    pages = [
        validate(
            posts_frame(8), data_docs_dir=docs, batch_name=f"run-{i}", docs_keep_runs=2
        ).data_docs_path
        for i in range(3)
    ]
    assert [p is not None and p.is_file() for p in pages] == [False, True, True]
    stored = sorted(p.parent.parent.name for p in (tmp_path / "gx").rglob("*.json"))
    assert stored == ["run-1", "run-2"]
    index = (docs / "index.html").read_text(encoding="utf-8")
    assert "run-0" not in index and "run-2" in index
    with pytest.raises(ValueError, match="docs_keep_runs"):
        validate(posts_frame(8), data_docs_dir=docs, docs_keep_runs=0)


# Behaviour around GX ------------------------------------------------------------------------


def test_module_import_does_not_import_gx_or_pandas() -> None:
    code = (
        "import sys, fnd_core.ingest.quality; "
        "heavy = {'great_expectations', 'pandas'} & set(sys.modules); "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=EXPECTATIONS.parent)


def test_validation_is_quiet(
    capfd: pytest.CaptureFixture, caplog: pytest.LogCaptureFixture
) -> None:
    gx_logger = logging.getLogger("great_expectations")
    before = gx_logger.level
    capfd.readouterr()
    with caplog.at_level(logging.INFO):
        validate(posts_frame(40))
    out, err = capfd.readouterr()
    assert "Calculating Metrics" not in err + out
    assert not [r for r in caplog.records if r.name.startswith("great_expectations")]
    assert gx_logger.level == before, "the GX logger level is restored"


def test_validation_opens_no_network_connection(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    attempts: list[object] = []

    def refuse(*args: object, **kwargs: object) -> None:
        attempts.append(args)
        raise OSError("network disabled in this test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    summary = validate(posts_frame(8), data_docs_dir=tmp_path / "docs")
    assert summary.success
    assert attempts == []
