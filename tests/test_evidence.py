"""Evidence beside each verdict: perceptual hashes, the labelled-picture index, the look-up."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from PIL import Image, ImageFilter

from fnd_core.ingest.load import ingest_file
from fnd_core.io.picture_hash import hamming, picture_hashes
from fnd_core.pipeline import evidence
from fnd_core.settings import Settings, default
from fnd_core.stack.demo import generate_batch
from tests.labelled_verdicts import VERSION, add_version

BITS = default("picture_match_bits")


def photo(seed: int, size: tuple[int, int] = (480, 360)) -> Image.Image:
    """A photo-like picture: smooth random shapes of colour (no two seeds alike)."""
    rng = np.random.default_rng(seed)
    small = Image.fromarray(rng.integers(0, 256, (9, 12, 3), dtype=np.uint8))
    return small.resize(size, Image.Resampling.BICUBIC).filter(ImageFilter.GaussianBlur(6))


def reposted(image: Image.Image, *, scale: float = 0.5, quality: int = 40, crop: float = 0.05):
    """As a platform passes a picture on: borders cropped, scaled down, JPEG re-encoded."""
    w, h = image.size
    dx, dy = int(w * crop), int(h * crop)
    out = image.crop((dx, dy, w - dx, h - dy))
    out = out.resize((int(out.width * scale), int(out.height * scale)))
    buf = io.BytesIO()
    out.save(buf, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def distance(a: Image.Image, b: Image.Image) -> int:
    """The look-up's distance: b's whole-picture hash against a's three hashes."""
    return int(hamming(np.array([picture_hashes(b)[0]]), np.array(picture_hashes(a))).min())


@pytest.mark.parametrize(
    "change",
    [{"crop": 0.0}, {"crop": 0.0, "scale": 0.25, "quality": 25}, {"crop": 0.05}, {"crop": 0.1}],
)
def test_a_reposted_picture_stays_within_the_match_bits(change):
    original = photo(1)
    assert distance(original, reposted(original, **change)) <= BITS


@pytest.mark.parametrize("seed", range(8))
def test_the_whole_picture_hash_is_imagehash_phash(seed):
    """fnd computes the standard perceptual hash in numpy (three at once): the library's bits,
    up to a coefficient tied with the median."""
    import imagehash

    picture = photo(seed, size=(200, 150))
    reference = int(str(imagehash.phash(picture.convert("L"))), 16)
    mine = picture_hashes(picture)[0] & (2**64 - 1)
    assert bin(reference ^ mine).count("1") <= 1


def test_unrelated_pictures_are_far_apart():
    distances = [distance(photo(1), photo(seed)) for seed in range(2, 22)]
    assert min(distances) > BITS and np.median(distances) > 20


@pytest.mark.parametrize("mode", ["P", "1", "CMYK", "I;16", "LA"])
def test_a_large_picture_of_any_mode_is_hashed_small(mode):
    big = photo(3, size=(2400, 1800)).convert("L" if mode == "I;16" else "RGB").convert(mode)
    assert len(picture_hashes(big)) == 3
    assert distance(photo(3, size=(2400, 1800)), big.convert("RGB")) <= BITS + 4  # same scene


def test_the_hashes_at_ingest_see_the_picture_upright():
    """A phone photo stored sideways with an EXIF orientation: hashed as shown."""
    from fnd_core.io.imaging import inspect_image

    upright = photo(5)
    sideways = upright.transpose(Image.Transpose.ROTATE_90)  # orientation 6 turns it back
    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    sideways.save(buf, "JPEG", quality=90, exif=exif)
    stored = inspect_image(buf.getvalue(), max_pixels=10**8).phashes
    assert stored is not None
    assert int(hamming(np.array([stored[0]]), np.array(picture_hashes(upright))).min()) <= BITS


def land(settings: Settings, name: str, records: list[dict], images: dict[str, Image.Image]):
    folder = Path(settings.landing)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    for file, image in images.items():
        image.save(folder / "images" / file, "JPEG", quality=90)
    path = folder / name
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def evidence_rows(engine) -> dict[str, tuple]:
    with engine.connect() as conn:
        return {r[0]: tuple(r[1:]) for r in conn.execute(sa.text(
            "select post_id, match_post_id, match_label, match_distance, matched, "
            "match_fake_posts, match_real_posts from fnd.prediction_evidence"
        ))}  # fmt: skip


@pytest.fixture
def labelled_pictures(clean_db, settings):
    """Three labelled pictures: one fake (two posts), one real, one labelled by one post."""
    images = {f"p{i}.jpg": photo(i) for i in (1, 2, 3)}
    records = [
        {"id": "fake-a", "text": "a", "image": "images/p1.jpg", "label": 1},
        {"id": "fake-b", "text": "b", "image": "images/p1.jpg", "label": 1},
        {"id": "real-a", "text": "c", "image": "images/p2.jpg", "label": 0},
        {"id": "lone", "text": "d", "image": "images/p3.jpg", "label": 0},
    ]
    ingest_file(clean_db, str(land(settings, "labelled.jsonl", records, images)), settings)
    add_version(clean_db)
    return clean_db


def test_reposts_of_labelled_pictures_are_matched_and_unrelated_ones_are_not(
    labelled_pictures, settings
):
    engine = labelled_pictures
    images = {"repost.jpg": reposted(photo(1)), "other.jpg": photo(40)}
    records = [
        {"id": "new-repost", "text": "e", "image": "images/repost.jpg"},
        {"id": "new-other", "text": "f", "image": "images/other.jpg"},
    ]
    ingest_file(engine, str(land(settings, "new.jsonl", records, images)), settings)
    index = evidence.build_index(engine, settings)
    ids = ["new-repost", "new-other", "fake-a", "lone"]
    assert evidence.attach(engine, settings, VERSION, index, ids) == 2
    rows = evidence_rows(engine)
    assert rows["new-repost"][:2] == ("fake-a", 1) and rows["new-repost"][3:] == (True, 2, 0)
    assert rows["new-other"][3] is False and rows["new-other"][2] > BITS
    # a labelled post is never its own evidence: fake-a's picture counts fake-b only
    assert rows["fake-a"] == ("fake-b", 1, 0, True, 1, 0)
    # 'lone' is the only post labelling its picture: its evidence is another picture
    assert rows["lone"][0] != "lone" and rows["lone"][3] is False


def test_the_view_lists_posts_matching_a_picture_labelled_fake(labelled_pictures, settings):
    engine = labelled_pictures
    with engine.begin() as conn:  # the champion's verdicts on the labelled posts
        conn.execute(sa.text(
            "insert into fnd.predictions (post_id, model_version, p_fake, label, threshold) "
            "select post_id, :v, 0.2, 'real', 0.5 from fnd.posts"), {"v": VERSION})  # fmt: skip
    novelty = {"fake-a": 12.5, "fake-b": 99.0, "real-a": None}
    evidence.attach(engine, settings, VERSION, evidence.build_index(engine, settings),
                    ["fake-a", "fake-b", "real-a"], novelty)  # fmt: skip
    with engine.connect() as conn:
        listed = conn.execute(sa.text(
            "select post_id, label, match_post_id from fnd.fake_picture_matches order by 1"
        )).all()  # fmt: skip
        beside = conn.execute(sa.text(
            "select post_id, novelty, matched from fnd.verdict_evidence order by 1"
        )).all()  # fmt: skip
    assert [tuple(r) for r in listed] == [
        ("fake-a", "real", "fake-b"),
        ("fake-b", "real", "fake-a"),
    ]
    # every verdict with its evidence: novelty as scoring measured it, the picture match
    assert {r[0]: r[1] for r in beside} == novelty
    assert {r[0]: r[2] for r in beside} == {"fake-a": True, "fake-b": True, "real-a": False}


def test_rebuilding_the_index_is_idempotent_and_fills_hashes_of_older_posts(
    labelled_pictures, settings
):
    engine = labelled_pictures
    first = evidence.build_index(engine, settings)
    assert len(first) == 3 and evidence.build_index(engine, settings).digest == first.digest
    with engine.begin() as conn:  # as if ingested before sql/019
        conn.execute(sa.text("update fnd.posts set image_phashes = null"))
    again = evidence.build_index(engine, settings)
    assert again.digest == first.digest
    with engine.connect() as conn:
        assert (
            conn.execute(
                sa.text("select count(*) from fnd.posts where image_phashes is null")
            ).scalar_one()
            == 0
        )


def test_a_label_that_changes_changes_the_index(labelled_pictures, settings):
    from tests.test_labels import label_file

    engine = labelled_pictures
    before = evidence.build_index(engine, settings)
    ingest_file(engine, str(label_file(settings, "fix.csv", [
        {"post_id": "real-a", "label": 1, "source": "afp"}])), settings)  # fmt: skip
    after = evidence.build_index(engine, settings)
    assert after.digest != before.digest
    assert (int(after.n_fake.sum()), int(after.n_real.sum())) == (3, 1)  # real-a now fake


def test_without_labelled_pictures_every_post_gets_an_empty_record(clean_db, settings):
    generate_batch(Path(settings.landing), 3, seed=4, unlabelled_share=1.0)
    ingest_file(clean_db, str(Path(settings.landing) / "demo_s4.jsonl"), settings)
    add_version(clean_db)
    index = evidence.build_index(clean_db, settings)
    assert len(index) == 0
    ids = ["s4-000000", "s4-000001"]
    assert evidence.attach(clean_db, settings, VERSION, index, ids) == 0
    assert set(evidence_rows(clean_db).values()) == {(None, None, None, False, None, None)}
