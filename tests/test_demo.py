"""Demo data generator: determinism, label bookkeeping, formats, and that only fusion learns it."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fnd_core.stack.demo import DemoBatch, generate_batch
from fnd_core.stack.demo_files import FAKEDDIT_COLUMNS
from fnd_core.stack.demo_posts import ATTRIBUTES, CONFLICT_ATTRIBUTES, make_post

DATA_FILES = {
    "jsonl": "demo_s{seed}.jsonl",
    "csv": "demo_s{seed}.csv",
    "fakeddit": "demo_s{seed}_multimodal.tsv",
}


def _tree_bytes(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*.*"))}


def _read_table(path: Path) -> list[dict[str, str]]:
    delimiter = "\t" if path.suffix == ".tsv" else ","
    with path.open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f, delimiter=delimiter))


# Determinism ---------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["jsonl", "csv", "fakeddit"])
def test_same_seed_gives_byte_identical_files(tmp_path: Path, fmt: str) -> None:
    kwargs = {"seed": 7, "fmt": fmt, "unlabelled_share": 0.2, "label_noise": 0.1}
    first = generate_batch(tmp_path / "a", 25, **kwargs)
    generate_batch(tmp_path / "b", 25, **kwargs)
    assert first.data_file.name == DATA_FILES[fmt].format(seed=7)
    files_a, files_b = _tree_bytes(tmp_path / "a"), _tree_bytes(tmp_path / "b")
    assert len(files_a) == 26  # the data file and one image per post
    assert files_a == files_b


def test_different_seeds_differ_and_can_share_a_folder(tmp_path: Path) -> None:
    one = generate_batch(tmp_path, 20, seed=1)
    two = generate_batch(tmp_path, 20, seed=2)
    assert one.data_file != two.data_file
    rows_one = [json.loads(line) for line in one.data_file.read_text().splitlines()]
    rows_two = [json.loads(line) for line in two.data_file.read_text().splitlines()]
    assert all(r["id"].startswith("s1-") for r in rows_one)
    assert all(r["id"].startswith("s2-") for r in rows_two)
    assert [r["text"] for r in rows_one] != [r["text"] for r in rows_two]
    assert len(list((tmp_path / "images").glob("*.jpg"))) == 40
    image_one = (tmp_path / rows_one[0]["image"]).read_bytes()
    assert image_one != (tmp_path / rows_two[0]["image"]).read_bytes()
    assert rows_one[0]["created_utc"] != rows_two[0]["created_utc"]


def test_a_post_does_not_depend_on_the_batch_size(tmp_path: Path) -> None:
    small = generate_batch(tmp_path / "small", 5, seed=3)
    large = generate_batch(tmp_path / "large", 12, seed=3)
    lines_small = small.data_file.read_text().splitlines()
    assert large.data_file.read_text().splitlines()[:5] == lines_small
    for name in ("s3-000000.jpg", "s3-000004.jpg"):
        assert (small.images_dir / name).read_bytes() == (large.images_dir / name).read_bytes()


# Content -------------------------------------------------------------------------------------
def test_jsonl_rows_and_images_follow_the_landing_format(tmp_path: Path) -> None:
    batch = generate_batch(tmp_path, 30, seed=4, unlabelled_share=0.3, image_size=96)
    rows = [json.loads(line) for line in batch.data_file.read_text().splitlines()]
    assert [r["id"] for r in rows] == [f"s4-{i:06d}" for i in range(30)]
    for row in rows:
        assert set(row) <= {"id", "text", "image", "created_utc", "event", "label"}
        assert row["event"] == f"s4-e{int(row['id'].split('-')[1]) // 24:04d}"
        assert isinstance(row["created_utc"], int) and row["created_utc"] > 1_600_000_000
        assert row.get("label", 0) in (0, 1)
        with Image.open(tmp_path / row["image"]) as image:
            assert (image.format, image.mode, image.size) == ("JPEG", "RGB", (96, 96))
    times = [r["created_utc"] for r in rows]
    assert times == sorted(times)
    assert sum("label" not in r for r in rows) == batch.n_unlabelled > 0


def test_csv_leaves_the_label_empty_when_unlabelled(tmp_path: Path) -> None:
    batch = generate_batch(tmp_path, 40, seed=5, fmt="csv", unlabelled_share=0.5)
    rows = _read_table(batch.data_file)
    assert list(rows[0]) == ["id", "text", "image", "created_utc", "event", "label"]
    labels = [r["label"] for r in rows]
    assert set(labels) <= {"", "0", "1"}
    assert labels.count("") == batch.n_unlabelled
    assert labels.count("1") == batch.n_fake and labels.count("0") == batch.n_real
    assert all((tmp_path / r["image"]).is_file() for r in rows)


def test_fakeddit_maps_two_way_label_zero_to_fake(tmp_path: Path) -> None:
    batch = generate_batch(tmp_path, 40, seed=6, fmt="fakeddit", unlabelled_share=0.2)
    rows = _read_table(batch.data_file)
    header = batch.data_file.read_text().splitlines()[0].split("\t")
    assert tuple(header) == FAKEDDIT_COLUMNS
    for i, row in enumerate(rows):
        ours = make_post(6, i, unlabelled_share=0.2).label
        expected = "" if ours is None else str(1 - ours)  # Fakeddit: 0 = fake, 1 = true
        assert row["2_way_label"] == expected
        assert (row["6_way_label"] == "0") == (expected == "1")
        assert (tmp_path / "images" / f"{row['id']}.jpg").is_file()
        assert row["title"] and row["clean_title"] == row["clean_title"].lower()
        assert float(row["created_utc"]).is_integer()
    assert [r["2_way_label"] for r in rows].count("0") == batch.n_fake > 0


def test_fake_captions_contradict_the_picture_in_exactly_one_attribute() -> None:
    contradicted = set()
    for i in range(300):
        post = make_post(8, i)
        differing = [a for a in ATTRIBUTES if post.image_attrs[a] != post.caption_attrs[a]]
        assert len(differing) == (1 if post.is_fake else 0)
        contradicted.update(differing)
        assert post.caption_attrs["colour"] in post.text
    assert contradicted == set(CONFLICT_ATTRIBUTES)


def test_captions_and_pictures_have_the_same_distribution_in_both_classes() -> None:
    """Why single-modality models stay at chance: each attribute is uniform in both classes."""
    posts = [make_post(12, i) for i in range(3000)]
    for side in ("image_attrs", "caption_attrs"):
        for attr in ATTRIBUTES:
            for fake in (False, True):
                values = [str(getattr(p, side)[attr]) for p in posts if p.is_fake == fake]
                shares = np.unique(values, return_counts=True)[1] / len(values)
                assert np.allclose(shares, 1 / len(shares), atol=0.04), (side, attr, fake)


def test_shares_of_fakes_and_unlabelled_posts_are_close_to_the_request() -> None:
    posts = [make_post(9, i, fake_share=0.3, unlabelled_share=0.25) for i in range(2000)]
    assert np.mean([p.is_fake for p in posts]) == pytest.approx(0.3, abs=0.03)
    assert np.mean([p.label is None for p in posts]) == pytest.approx(0.25, abs=0.03)
    labelled = [p for p in posts if p.label is not None]
    assert all(p.label == int(p.is_fake) for p in labelled)  # no label noise asked


def test_extreme_shares_are_exact(tmp_path: Path) -> None:
    assert generate_batch(tmp_path / "a", 20, fake_share=0.0).n_fake == 0
    all_fake = generate_batch(tmp_path / "b", 20, fake_share=1.0)
    assert (all_fake.n_fake, all_fake.n_real) == (20, 0)
    hidden = generate_batch(tmp_path / "c", 20, unlabelled_share=1.0)
    assert hidden == DemoBatch(hidden.data_file, hidden.images_dir, 20, 0, 0, 20)


def test_label_noise_flips_that_share_of_labels() -> None:
    posts = [make_post(10, i, label_noise=0.2) for i in range(2000)]
    flipped = np.mean([p.label != int(p.is_fake) for p in posts])
    assert flipped == pytest.approx(0.2, abs=0.03)
    again = [make_post(10, i, label_noise=0.2).label for i in range(200)]
    assert again == [p.label for p in posts[:200]]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_posts": 0}, "n_posts"),
        ({"n_posts": 2.5}, "n_posts"),
        ({"seed": -1}, "seed"),
        ({"fmt": "xml"}, "fmt"),
        ({"fake_share": 1.5}, "fake_share"),
        ({"unlabelled_share": -0.1}, "unlabelled_share"),
        ({"label_noise": 0.7}, "label_noise"),
        ({"image_size": 16}, "image_size"),
    ],
)
def test_bad_arguments_are_rejected_clearly(tmp_path: Path, kwargs: dict, message: str) -> None:
    args = {"n_posts": 5, **kwargs}
    with pytest.raises(ValueError, match=message):
        generate_batch(tmp_path, args.pop("n_posts"), **args)
    assert not (tmp_path / "images").exists()  # nothing written on bad input


# Learnability with simple baselines ----------------------------------------------------------
# Measured on this batch (600 posts, seed 21, 5-fold CV): text-only 0.54, image-only 0.48,
# caption words x image features 0.76. The floors leave room for harmless generator tweaks.
CHANCE_CEILING = 0.62
FUSION_BASELINE_FLOOR = 0.68

# Named colours (object colours, night sky, snow, sand): a generic colour-name histogram.
_PALETTE = np.array(
    [(220, 30, 30), (30, 165, 50), (35, 75, 225), (250, 210, 20), (15, 20, 45),
     (240, 242, 248), (215, 160, 85), (190, 200, 220), (250, 225, 165)],
    dtype=np.float32,
)  # fmt: skip


def _image_features(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(colour-name histogram + edge-orientation histogram, 8x8 thumbnail) of one image."""
    with Image.open(path) as image:
        rgb = image.convert("RGB")
        pixels = np.asarray(rgb.resize((32, 32)), dtype=np.float32).reshape(-1, 1, 3)
        grey = np.asarray(rgb.convert("L").resize((64, 64)), dtype=np.float32)
        thumb = np.asarray(rgb.resize((8, 8)), dtype=np.float32).ravel() / 255
    colours = np.bincount(((pixels - _PALETTE) ** 2).sum(-1).argmin(1), minlength=len(_PALETTE))
    gx, gy = grey[1:-1, 2:] - grey[1:-1, :-2], grey[2:, 1:-1] - grey[:-2, 1:-1]
    bins = (np.arctan2(gy, gx) % np.pi / np.pi * 12).astype(int).clip(0, 11)
    edges = np.bincount(bins.ravel(), weights=np.hypot(gx, gy).ravel(), minlength=12)
    return np.concatenate([colours / colours.sum(), edges / (edges.sum() + 1e-6)]), thumb


@pytest.fixture(scope="module")
def baseline_data(tmp_path_factory: pytest.TempPathFactory):
    """600 posts: binary caption word counts, image summaries, thumbnails and labels."""
    from sklearn.feature_extraction.text import CountVectorizer

    folder = tmp_path_factory.mktemp("baseline")
    batch = generate_batch(folder, 600, seed=21)
    rows = [json.loads(line) for line in batch.data_file.read_text().splitlines()]
    words = CountVectorizer(binary=True).fit_transform([r["text"] for r in rows]).toarray()
    summaries, thumbs = zip(*(_image_features(folder / r["image"]) for r in rows), strict=True)
    labels = np.array([r["label"] for r in rows])
    return words.astype(np.float32), np.stack(summaries), np.stack(thumbs), labels


def _cv_accuracy(features: np.ndarray, labels: np.ndarray, c: float) -> float:
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score

    model = LogisticRegression(C=c, solver="liblinear", max_iter=5000)
    return float(cross_val_score(model, features, labels, cv=5).mean())


def test_text_only_and_image_only_baselines_stay_near_chance(baseline_data) -> None:
    words, summaries, thumbs, labels = baseline_data
    assert _cv_accuracy(words, labels, c=1.0) <= CHANCE_CEILING
    image = np.hstack([summaries, thumbs])
    image = (image - image.mean(0)) / (image.std(0) + 1e-6)
    assert _cv_accuracy(image, labels, c=0.1) <= CHANCE_CEILING


def test_crossing_caption_words_with_image_features_learns(baseline_data) -> None:
    words, summaries, _, labels = baseline_data
    crossed = (words[:, :, None] * summaries[:, None, :]).reshape(len(labels), -1)
    assert _cv_accuracy(crossed, labels, c=10.0) >= FUSION_BASELINE_FLOOR
