"""Landing readers, row rules, image checks and the content-addressed image store.

Every fixture (data files, images, crafted headers) is generated in code into ``tmp_path``.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fnd_core.ingest import images, parquet_reader, readers, rows
from fnd_core.ingest.images import ImageStore
from fnd_core.ingest.readers import RawRow, UnreadableFileError
from fnd_core.ingest.rows import AcceptedPost, InvalidField, RejectedRow
from fnd_core.io import imaging, storage
from fnd_core.io.imaging import ImageRejected
from tests.helpers import recording_server
from tests.media import jpeg_bytes, noisy_jpeg, png_bytes, png_header_only, write_jsonl

MAX_PIXELS = 40_000_000


@pytest.fixture
def landing(tmp_path: Path) -> Path:
    """A landing folder with an images/ folder holding a few good pictures."""
    folder = tmp_path / "landing"
    (folder / "images").mkdir(parents=True)
    for i in range(3):
        (folder / "images" / f"ok{i}.jpg").write_bytes(noisy_jpeg(seed=i))
    return folder


@pytest.fixture
def store(tmp_path: Path) -> ImageStore:
    return ImageStore(str(tmp_path / "store"))


def check_all(path: Path, store: ImageStore, **limits) -> rows.CheckedFile:
    return rows.check_file(readers.read_landing_file(str(path)), store, **limits)


def only(result: rows.CheckedFile) -> AcceptedPost | RejectedRow:
    [outcome] = result.accepted + result.rejected
    return outcome


def post(**fields) -> dict:
    base = {"id": "p1", "text": "A caption", "image": "images/ok0.jpg"}
    base.update(fields)
    return {k: v for k, v in base.items() if v is not ...}


# Readers -----------------------------------------------------------------------------------------
def test_jsonl_reader_maps_columns_and_accepts_good_rows(landing: Path, store: ImageStore):
    path = write_jsonl(
        landing / "batch.jsonl",
        [
            post(id="a", created_utc=1704067200, label=1, subreddit="pics"),
            post(id=7, text=None, title="From the title", label="Real", image="images/ok1.jpg"),
            post(id="c", created_utc="2024-01-01T01:00:00+01:00", label=None),
        ],
    )
    read = readers.read_landing_file(str(path))
    assert read.format == "jsonl" and read.source == "jsonl:batch.jsonl"
    assert [r.row_number for r in read.rows] == [1, 2, 3]
    assert read.rows[0].raw == json.dumps(
        post(id="a", created_utc=1704067200, label=1, subreddit="pics")
    )
    result = rows.check_file(read, store)
    assert not result.rejected
    a, b, c = result.accepted
    assert (a.post_id, a.label, a.extra) == ("a", 1, {"subreddit": "pics"})
    assert a.created_at == dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    assert (b.post_id, b.text, b.label, b.created_at) == ("7", "From the title", 0, None)
    assert c.created_at == dt.datetime(2024, 1, 1, tzinfo=dt.UTC) and c.label is None
    assert a.source == "jsonl:batch.jsonl"
    assert (a.image_width, a.image_height) == (64, 64)


def test_ndjson_with_crlf_and_blank_lines_numbers_rows_by_line(landing: Path, store: ImageStore):
    lines = [json.dumps(post(id=f"n{i}")).encode() for i in range(2)]
    (landing / "b.ndjson").write_bytes(lines[0] + b"\r\n\r\n   \r\n" + lines[1] + b"\r\n")
    read = readers.read_landing_file(str(landing / "b.ndjson"))
    assert read.format == "jsonl" and [r.row_number for r in read.rows] == [1, 4]
    assert [r.raw for r in read.rows] == [line.decode() for line in lines]
    assert len(rows.check_file(read, store).accepted) == 2


def test_csv_rows_are_judged_one_by_one_when_streamed(landing: Path):
    """An over-long field and a row of invalid UTF-8 cost their own rows, not the file's."""
    path = landing / "stream.csv"
    path.write_bytes(
        b"id,text,image\n"
        b"a1,fine,images/ok0.jpg\n"
        b'a2,"' + b"y" * 5000 + b'",images/ok0.jpg\n'
        b"a3,caf\xe9 latin-1,images/ok0.jpg\n"
        b"a4,also fine,images/ok1.jpg\n"
    )
    read = readers.read_landing_file(str(path), limits=readers.RowLimits(max_row_bytes=1000))
    by_id = {r.raw.split(",")[0]: r for r in read.rows}
    assert by_id["a1"].error is None and by_id["a4"].error is None
    assert by_id["a2"].error_rule == "row_too_long"
    assert by_id["a3"].error_rule == "text_invalid_utf8" and "\\xe9" in by_id["a3"].raw


def test_parquet_is_read_in_record_batches(landing: Path, monkeypatch):
    import pandas as pd

    monkeypatch.setattr(parquet_reader, "_PARQUET_BATCH_ROWS", 3)
    ids = [f"p{i}" for i in range(10)]
    pd.DataFrame({"id": ids, "text": ids, "image": ["images/ok0.jpg"] * 10}).to_parquet(
        landing / "b.parquet", row_group_size=4
    )
    read = readers.read_landing_file(str(landing / "b.parquet"))
    assert [r.fields["id"] for r in read.rows] == ids
    assert [r.row_number for r in read.rows] == list(range(1, 11))


def test_csv_reader_keeps_each_record_verbatim(landing: Path, store: ImageStore):
    path = landing / "batch.csv"
    path.write_text(
        "id,text,image,created_utc,label\n"
        'c1,"Two lines,\nwith a comma",images/ok0.jpg,1704067200,fake\n'
        "\n"
        "c2,Plain,images/ok1.jpg,,\n"
        "c3,Too,many,columns,here,!\n",
        encoding="utf-8",
    )
    read = readers.read_landing_file(str(path))
    assert read.format == "csv"
    assert [r.raw for r in read.rows] == [
        'c1,"Two lines,\nwith a comma",images/ok0.jpg,1704067200,fake',
        "c2,Plain,images/ok1.jpg,,",
        "c3,Too,many,columns,here,!",
    ]
    result = rows.check_file(read, store)
    first, second = result.accepted
    assert first.text == "Two lines,\nwith a comma" and first.label == 1
    assert second.label is None and second.created_at is None
    [bad] = result.rejected
    assert (bad.row_number, bad.rule) == (3, "column_count_mismatch")
    assert "expected 5 columns" in bad.reason and "got 6" in bad.reason


def test_parquet_reader(landing: Path, store: ImageStore):
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table(
        {
            "id": ["q1", "q2"],
            "text": ["Parquet one", "Parquet two"],
            "image": ["images/ok0.jpg", "./images/sub/../ok1.jpg"],
            "created_utc": [1704067200.5, float("nan")],
            "label": [0, None],
            "score": [3, 4],
        }
    )
    pq.write_table(table, landing / "batch.parquet")
    read = readers.read_landing_file(str(landing / "batch.parquet"))
    assert read.format == "parquet"
    assert json.loads(read.rows[0].raw)["id"] == "q1"
    result = rows.check_file(read, store)
    assert not result.rejected
    one, two = result.accepted
    assert one.created_at == dt.datetime(2024, 1, 1, 0, 0, 0, 500000, tzinfo=dt.UTC)
    assert (one.label, one.extra) == (0, {"score": 3})
    assert (two.created_at, two.label) == (None, None)


FAKEDDIT_HEADER = (
    "author", "clean_title", "created_utc", "domain", "hasImage", "id", "image_url",
    "linked_submission_id", "num_comments", "score", "subreddit", "title", "upvote_ratio",
    "2_way_label", "3_way_label", "6_way_label",
)  # fmt: skip


def write_fakeddit(path: Path, records: list[dict]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, delimiter="\t", lineterminator="\n")
        writer.writerow(["", *FAKEDDIT_HEADER])  # the real files start with an index column
        for i, record in enumerate(records):
            writer.writerow([i, *(record.get(c, "") for c in FAKEDDIT_HEADER)])
    return path


def fakeddit_record(post_id: str, two_way: str, **overrides) -> dict:
    record = {
        "author": "someone",
        "clean_title": f"clean {post_id}",
        "created_utc": "1551641142.0",
        "domain": "i.imgur.com",
        "hasImage": "True",
        "id": post_id,
        "num_comments": "12",
        "score": "40",
        "subreddit": "pics",
        "title": f"Original {post_id}!",
        "upvote_ratio": "0.93",
        "2_way_label": two_way,
        "3_way_label": "0",
        "6_way_label": "0",
    }
    record.update(overrides)
    return record


def test_fakeddit_reader_maps_labels_and_finds_images(tmp_path: Path, store: ImageStore):
    folder = tmp_path / "fakeddit"
    (folder / "images").mkdir(parents=True)
    for post_id in ("f0", "f1", "f2"):
        (folder / "images" / f"{post_id}.jpg").write_bytes(noisy_jpeg(seed=len(post_id)))
    path = write_fakeddit(
        folder / "multimodal_train.tsv",
        [
            fakeddit_record("f0", "0"),  # Fakeddit 0 = fake
            fakeddit_record("f1", "1"),  # Fakeddit 1 = true
            fakeddit_record("f2", "", clean_title=""),  # unlabelled, falls back to title
            fakeddit_record("f3", "1"),  # its image is missing
        ],
    )
    read = readers.read_landing_file(str(path))
    assert read.format == "fakeddit"
    result = rows.check_file(read, store)
    fake, real, unlabelled = result.accepted
    assert (fake.post_id, fake.label, fake.text) == ("f0", 1, "clean f0")
    assert (real.post_id, real.label) == ("f1", 0)
    assert (unlabelled.label, unlabelled.text) == (None, "Original f2!")
    assert fake.created_at == dt.datetime.fromtimestamp(1551641142, tz=dt.UTC)
    assert fake.extra["subreddit"] == "pics" and fake.extra["score"] == 40
    assert fake.extra["upvote_ratio"] == 0.93 and fake.extra["title"] == "Original f0!"
    assert fake.extra["2_way_label"] == "0"  # the source's own value is kept for reference
    [missing] = result.rejected
    assert missing.rule == "image_missing" and "images/f3.jpg" in missing.reason


def test_fakeddit_falls_back_to_public_image_set(tmp_path: Path, store: ImageStore):
    folder = tmp_path / "fakeddit"
    (folder / "public_image_set").mkdir(parents=True)
    (folder / "public_image_set" / "g0.jpg").write_bytes(noisy_jpeg())
    path = write_fakeddit(folder / "multimodal_test_public.tsv", [fakeddit_record("g0", "1")])
    accepted = only(check_all(path, store))
    assert isinstance(accepted, AcceptedPost) and accepted.label == 0


def test_fakeddit_row_without_image_is_rejected(tmp_path: Path, store: ImageStore):
    path = write_fakeddit(tmp_path / "x.tsv", [fakeddit_record("h0", "1", hasImage="False")])
    assert only(check_all(path, store)).rule == "image_missing"


# Bad rows ----------------------------------------------------------------------------------------
BIG_TEXT = "x" * 1_000_000


@pytest.mark.parametrize(
    ("record", "rule", "reason_part"),
    [
        (b'{"id": "b1", "text": "unterminated', "parse_error", "invalid JSON"),
        (b'["not", "an", "object"]', "parse_error", "expected a JSON object, got list"),
        (post(id=...), "id_missing", "no id"),
        (post(id="   "), "id_missing", "no id"),
        (post(id=True), "id_invalid", "string or integer"),
        (post(text=...), "text_missing", "'text' (or 'title')"),
        (post(text="  \n\t "), "text_empty", "empty or only whitespace"),
        (post(text=12), "text_not_string", "got 12"),
        (post(text=BIG_TEXT), "text_too_long", "1,000,000 characters"),
        (post(text="before\x00after"), "text_nul_byte", "NUL byte at character 6"),
        (
            b'{"id": "p1", "text": "lone \\ud800", "image": "x.jpg"}',
            "text_invalid_utf8",
            "surrogate",
        ),
        (post(image=...), "image_missing", "no image reference"),
        (post(image="images/nowhere.jpg"), "image_missing", "image file not found"),
        (post(image=["a.jpg"]), "image_ref_invalid", "not a path or URI"),
        (post(created_utc="yesterday"), "created_utc_invalid", "'yesterday'"),
        (post(created_utc="2024-13-45"), "created_utc_invalid", "ISO 8601"),
        (post(created_utc=1_704_067_200_000), "created_utc_invalid", "milliseconds"),
        (post(created_utc=-5), "created_utc_invalid", "outside 1970..2100"),
        (post(created_utc=True), "created_utc_invalid", "True"),
        (post(label="maybe"), "label_invalid", "'maybe' is not one of 0, 1, 'real', 'fake'"),
        (post(label=2), "label_invalid", "2 is not one of"),
        (post(label=True), "label_invalid", "True"),
        (post(extra_field="nul\x00inside"), "extra_invalid", "'extra_field'"),
        (
            b'{"id": "d1", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
            "parse_error",
            "nested too deeply",
        ),
        (
            post(
                extra_field=[
                    [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]
                ]
            ),
            "extra_invalid",
            "more than 32 deep",
        ),
    ],
    ids=lambda v: v if isinstance(v, str) and len(v) < 40 else None,
)
def test_bad_row_gets_rule_and_reason(landing, store, record, rule, reason_part):
    result = check_all(write_jsonl(landing / "bad.jsonl", [record]), store)
    rejected = only(result)
    assert isinstance(rejected, RejectedRow)
    assert rejected.rule == rule, rejected.reason
    assert reason_part in rejected.reason
    assert len(rejected.reason) < 400  # values are cut short, never pasted whole
    assert rejected.row_number == 1 and rejected.raw


def test_invalid_utf8_in_jsonl_is_quarantined_with_escaped_raw(landing, store):
    path = write_jsonl(
        landing / "bytes.jsonl",
        [
            b'{"id": "u1", "text": "caf\xe9 au lait", "image": "images/ok0.jpg"}',
            b'{"id": "u2", "text": "fine", "image": "images/ok0.jpg", "author": "\xff\xfe"}',
        ],
    )
    text_row, other_row = check_all(path, store).rejected
    assert text_row.rule == "text_invalid_utf8" and text_row.post_id == "u1"
    assert "caf\\xe9 au lait" in text_row.raw
    assert other_row.rule == "invalid_utf8" and "author" in other_row.reason
    assert "\\xff\\xfe" in other_row.raw


def test_csv_invalid_utf8_and_nul_bytes(landing, store):
    path = landing / "bytes.csv"
    path.write_bytes(
        b"id,text,image\n"
        b"v1,ol\xe9,images/ok0.jpg\n"
        b"v2,nul\x00here,images/ok0.jpg\n"
        b"v3,good,images/ok0.jpg\n"
    )
    result = check_all(path, store)
    assert [p.post_id for p in result.accepted] == ["v3"]
    utf8, nul = result.rejected
    assert (utf8.rule, utf8.raw) == ("text_invalid_utf8", "v1,ol\\xe9,images/ok0.jpg")
    assert (nul.rule, nul.raw) == ("text_nul_byte", "v2,nul\\x00here,images/ok0.jpg")


def test_duplicate_ids_in_a_file(landing, store):
    path = write_jsonl(
        landing / "dup.jsonl",
        [post(id="d1"), post(id="d2"), post(id="d1", text="again"), post(id=" d1 ")],
    )
    result = check_all(path, store)
    assert [p.post_id for p in result.accepted] == ["d1", "d2"]
    assert [(r.row_number, r.rule) for r in result.rejected] == [
        (3, "id_duplicate_in_file"),
        (4, "id_duplicate_in_file"),
    ]
    assert "already used by row 1" in result.rejected[0].reason


@pytest.mark.parametrize(
    ("content", "rule", "reason_part"),
    [
        (b"", "image_empty", "0 bytes"),
        (noisy_jpeg()[:2000], "image_truncated", "truncated"),
        (noisy_jpeg()[:300], "image_truncated", "Truncated"),
        (b"just some text, renamed to .jpg\n", "image_not_an_image", "not a recognised image"),
        (png_header_only(50_000, 50_000), "image_too_large", "2,500,000,000 pixels"),
        (png_header_only(8000, 6000), "image_too_large", "8000x6000 = 48,000,000 pixels"),
    ],
    ids=[
        "zero-byte",
        "truncated",
        "truncated-header",
        "fake",
        "bomb-50000x50000",
        "over-budget-8000x6000",
    ],
)
def test_bad_image_files(landing, store, content, rule, reason_part):
    (landing / "images" / "bad.jpg").write_bytes(content)
    result = check_all(write_jsonl(landing / "b.jsonl", [post(image="images/bad.jpg")]), store)
    rejected = only(result)
    assert (rejected.rule, rejected.post_id) == (rule, "p1")
    assert reason_part in rejected.reason
    assert not (Path(store.root) / "images").exists()  # nothing stored for a rejected image


def test_truncated_png_is_caught(store):
    data = png_bytes(
        Image.fromarray(np.random.default_rng(1).integers(0, 255, (64, 64, 3), np.uint8))
    )
    with pytest.raises(ImageRejected) as err:
        imaging.inspect_image(data[: len(data) // 2], max_pixels=MAX_PIXELS)
    assert err.value.rule in ("image_truncated", "image_corrupt")


def test_image_directory_is_unreadable(landing, store):
    (landing / "images" / "dir.jpg").mkdir()
    result = check_all(write_jsonl(landing / "b.jsonl", [post(image="images/dir.jpg")]), store)
    assert only(result).rule == "image_not_a_file"


# Image modes and orientation ---------------------------------------------------------------------
def test_cmyk_jpeg_converts_to_rgb():
    data = jpeg_bytes(mode="CMYK", colour=(0, 255, 255, 0))  # pure red in CMYK
    info = imaging.inspect_image(data, max_pixels=MAX_PIXELS)
    assert (info.mode, info.ext) == ("CMYK", "jpg")
    rgb = imaging.open_rgb(data, max_pixels=MAX_PIXELS)
    r, g, b = rgb.getpixel((5, 5))
    assert rgb.mode == "RGB" and r > 200 and g < 60 and b < 60


def test_sixteen_bit_png_is_scaled_not_clipped():
    grey = np.full((8, 8), 32768, dtype=np.uint16)
    grey[0, 0] = 65535
    data = png_bytes(Image.fromarray(grey))
    assert imaging.inspect_image(data, max_pixels=MAX_PIXELS).mode.startswith("I")
    rgb = imaging.open_rgb(data, max_pixels=MAX_PIXELS)
    assert rgb.getpixel((3, 3)) == (128, 128, 128) and rgb.getpixel((0, 0)) == (255, 255, 255)


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_alpha_is_composited_on_white(mode):
    image = Image.new(mode, (6, 6), (0, 0, 0, 0) if mode == "RGBA" else (0, 0))
    image.putpixel((0, 0), (0, 0, 255, 255) if mode == "RGBA" else (0, 255))
    rgb = imaging.open_rgb(png_bytes(image), max_pixels=MAX_PIXELS)
    assert rgb.getpixel((3, 3)) == (255, 255, 255)  # transparent -> white, not black
    assert rgb.getpixel((0, 0)) == ((0, 0, 255) if mode == "RGBA" else (0, 0, 0))


def test_palette_with_transparency():
    image = Image.new("P", (4, 4), 0)
    image.putpalette([0, 0, 0, 0, 200, 0] + [0] * 762)
    image.putpixel((1, 1), 1)
    image.info["transparency"] = 0
    rgb = imaging.open_rgb(png_bytes(image), max_pixels=MAX_PIXELS)
    assert rgb.getpixel((0, 0)) == (255, 255, 255) and rgb.getpixel((1, 1)) == (0, 200, 0)


def test_exif_orientation_is_applied(landing, store):
    image = Image.new("RGB", (40, 20), (0, 0, 255))
    image.paste((255, 0, 0), (0, 0, 20, 20))  # left half red
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: display rotated 90 degrees clockwise
    buf = io.BytesIO()
    image.save(buf, format="JPEG", exif=exif.tobytes(), quality=95)
    rgb = imaging.open_rgb(buf.getvalue(), max_pixels=MAX_PIXELS)
    assert rgb.size == (20, 40)
    assert rgb.getpixel((10, 5))[0] > 200  # the red half is now on top
    assert rgb.getpixel((10, 35))[2] > 200
    (landing / "images" / "rot.jpg").write_bytes(buf.getvalue())
    accepted = only(
        check_all(write_jsonl(landing / "r.jsonl", [post(image="images/rot.jpg")]), store)
    )
    assert (accepted.image_width, accepted.image_height) == (20, 40)


def test_open_rgb_draft_size_decodes_jpeg_smaller_but_covering():
    data = noisy_jpeg(side=800)
    assert imaging.open_rgb(data, max_pixels=MAX_PIXELS).size == (800, 800)
    small = imaging.open_rgb(data, max_pixels=MAX_PIXELS, draft_size=224)
    assert 224 <= small.width < 800 and small.mode == "RGB"


def test_format_comes_from_content_not_name(landing, store):
    (landing / "images" / "really_png.jpg").write_bytes(png_bytes(Image.new("RGB", (5, 5))))
    result = check_all(
        write_jsonl(landing / "p.jsonl", [post(image="images/really_png.jpg")]), store
    )
    assert only(result).image_uri.endswith(".png")


# Text fidelity, accounting, the store ------------------------------------------------------------
EXACT_TEXTS = [
    "Emoji 👩‍👩‍👧 and 🇺🇦 flags",
    "עברית ועוד RTL mixed with العربية",
    "Combining: e\u0301 vs \u00e9, Zalgo a\u0336\u0337",
    "Inner  double  spaces,\ttabs,\nnewlines and \u2028 separators stay",
    "Zero\u200bwidth and \ufeff BOM inside",
]


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_text_is_kept_byte_exact(landing, store, fmt):
    records = [post(id=f"t{i}", text=f"  {text} \n") for i, text in enumerate(EXACT_TEXTS)]
    if fmt == "jsonl":
        path = write_jsonl(landing / "t.jsonl", records)
    else:
        path = landing / "t.csv"
        with path.open("w", encoding="utf-8", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=["id", "text", "image"])
            writer.writeheader()
            writer.writerows(records)
    accepted = check_all(path, store).accepted
    assert [p.text.encode() for p in accepted] == [t.encode() for t in EXACT_TEXTS]


def test_received_equals_accepted_plus_rejected(landing, store):
    records = [post(id=f"m{i}", image=f"images/ok{i % 3}.jpg") for i in range(6)]
    records += [b"{broken", post(id="m1"), post(id="m9", text=""), post(id="m10", label="x")]
    read = readers.read_landing_file(str(write_jsonl(landing / "mixed.jsonl", records)))
    result = rows.check_file(read, store)
    assert len(read.rows) == 10 == result.n_received
    assert (len(result.accepted), len(result.rejected)) == (6, 4)
    numbers = sorted(r.row_number for r in result.accepted + result.rejected)
    assert numbers == list(range(1, 11))


def test_shared_image_is_stored_once(landing, store):
    same = noisy_jpeg(seed=42)
    (landing / "images" / "copy_a.jpg").write_bytes(same)
    (landing / "images" / "copy_b.jpg").write_bytes(same)
    path = write_jsonl(
        landing / "s.jsonl",
        [
            post(id="s1", image="images/copy_a.jpg"),
            post(id="s2", image="images/copy_a.jpg"),
            post(id="s3", image="images/copy_b.jpg"),
        ],
    )
    accepted = check_all(path, store).accepted
    assert len({p.image_uri for p in accepted}) == 1
    assert len({p.image_sha256 for p in accepted}) == 1
    stored = list((Path(store.root) / "images").iterdir())
    assert [p.name for p in stored] == [f"{imaging.sha256_hex(same)}.jpg"]
    assert stored[0].read_bytes() == same  # the original bytes, not a re-encode


def test_store_skips_existing_content(tmp_path):
    data = noisy_jpeg()
    sha = imaging.sha256_hex(data)
    first = ImageStore(str(tmp_path / "st"))
    uri = first.put(data, sha256=sha, ext="jpg")
    os.utime(uri, (1, 1))
    again = ImageStore(str(tmp_path / "st")).put(data, sha256=sha, ext="jpg")
    assert again == uri and os.stat(uri).st_mtime == 1  # not rewritten


def test_relative_store_root_becomes_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert ImageStore("rel/store").uri_for("ab", "png") == str(tmp_path / "rel/store/images/ab.png")


def test_hostile_image_references_are_refused_unopened(landing, store, tmp_path):
    """Every way out of the landing folder is refused with a rule, without reading a byte."""
    import resource

    outside = tmp_path / "outside.jpg"  # a valid picture next to (not inside) the landing folder
    outside.write_bytes(noisy_jpeg(seed=9))
    (landing / "images" / "link_out.jpg").symlink_to(outside)
    (landing / "images" / "link_passwd.jpg").symlink_to("/etc/passwd")
    (landing / "images" / "link_ok.jpg").symlink_to(landing / "images" / "ok2.jpg")  # stays in
    os.mkfifo(landing / "images" / "fifo.jpg")
    server = contextlib.ExitStack()
    port, hits = server.enter_context(recording_server(noisy_jpeg(seed=3)))
    url = f"http://127.0.0.1:{port}/x.jpg"
    hostile = {
        "dev_zero": ("/dev/zero", "image_outside_zone"),
        "passwd": ("/etc/passwd", "image_outside_zone"),
        "no_such": ("/etc/no-such-file", "image_outside_zone"),
        "dotdot": ("../../../../etc/passwd", "image_outside_zone"),
        "dotdot_jpeg": ("../outside.jpg", "image_outside_zone"),
        "abs_jpeg": (str(outside), "image_outside_zone"),
        "file_uri": ("file:///etc/passwd", "image_outside_zone"),
        "proc": ("/proc/self/environ", "image_outside_zone"),
        "link_out": ("images/link_out.jpg", "image_outside_zone"),
        "link_passwd": ("images/link_passwd.jpg", "image_outside_zone"),
        "http": (url, "image_remote_refused"),
        "https": ("https://example.com/x.jpg", "image_remote_refused"),
        "fifo": ("images/fifo.jpg", "image_not_a_file"),
        "folder": ("images", "image_not_a_file"),
    }
    records = [
        post(id="good0", image="images/ok0.jpg"),
        post(id="good1", image="images/link_ok.jpg"),
    ]
    records += [post(id=name, image=ref) for name, (ref, _) in hostile.items()]
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    try:
        result = check_all(write_jsonl(landing / "hostile.jsonl", records), store)
    finally:
        server.close()
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert [a.post_id for a in result.accepted] == ["good0", "good1"]
    assert {r.post_id: r.rule for r in result.rejected} == {
        n: rule for n, (_, rule) in hostile.items()
    }
    assert hits == []  # no request left the process
    stored = {p.name.split(".")[0] for p in (tmp_path / "store" / "images").iterdir()}
    assert stored == {a.image_sha256 for a in result.accepted}  # nothing from outside
    assert grown_kib < 50_000  # /dev/zero was never read
    reasons = {r.post_id: r.reason for r in result.rejected}
    # a reason never tells whether something outside exists
    assert reasons["passwd"].replace("passwd", "X") == reasons["no_such"].replace(
        "no-such-file", "X"
    )
    assert all("bytes" not in reason for reason in reasons.values())


def test_oversized_image_files_are_refused_before_reading(landing, store):
    result = check_all(
        write_jsonl(landing / "big.jsonl", [post(image="images/ok0.jpg")]),
        store,
        max_image_bytes=100,
    )
    assert only(result).rule == "image_too_big"
    assert "FND_MAX_IMAGE_BYTES" in only(result).reason


def test_an_unforeseen_error_checking_a_row_quarantines_that_row_only(landing, store, monkeypatch):
    real = rows.parse_label

    def trips_on_b(value):
        if value == "trip":
            raise RecursionError("what no rule foresaw")
        return real(value)

    monkeypatch.setattr(rows, "parse_label", trips_on_b)
    records = [post(id="a", label=1), post(id="b", label="trip"), post(id="c", label=0)]
    result = check_all(write_jsonl(landing / "odd.jsonl", records), store)
    assert [a.post_id for a in result.accepted] == ["a", "c"]
    [bad] = result.rejected
    assert (bad.post_id, bad.rule) == ("b", "row_unreadable") and "RecursionError" in bad.reason


def test_an_unexpected_image_error_quarantines_the_row_only(landing, store, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("HTTP 500 from a flaky store")

    monkeypatch.setattr(rows, "ingest_image", boom)
    records = [post(id="a", image="images/ok0.jpg")]
    result = check_all(write_jsonl(landing / "flaky.jsonl", records), store)
    assert (only(result).rule, only(result).reason) == (
        "image_unreadable",
        f"cannot read or decode image {landing / 'images' / 'ok0.jpg'}: RuntimeError",
    )


def test_fakeddit_ids_cannot_escape_the_image_folder(tmp_path: Path, store: ImageStore):
    folder = tmp_path / "fakeddit"
    (folder / "images").mkdir(parents=True)
    (folder / "images" / "f0.jpg").write_bytes(noisy_jpeg(seed=1))
    (tmp_path / "secret.jpg").write_bytes(noisy_jpeg(seed=2))
    path = write_fakeddit(
        folder / "multimodal_train.tsv",
        [fakeddit_record("f0", "0"), fakeddit_record("../../secret", "1")],
    )
    result = check_all(path, store)
    assert [a.post_id for a in result.accepted] == ["f0"]
    assert [r.rule for r in result.rejected] == ["image_outside_zone"]


def test_threads_give_the_same_outcome(landing, store, tmp_path):
    records = [post(id=f"w{i}", image=f"images/ok{i % 3}.jpg") for i in range(9)]
    records += [post(id="w0"), post(id="wx", image="images/none.jpg")]
    read = readers.read_landing_file(str(write_jsonl(landing / "w.jsonl", records)))
    serial = rows.check_file(read, store)
    threaded = rows.check_file(read, ImageStore(str(tmp_path / "other")), workers=3)
    strip = lambda r: (r.row_number, getattr(r, "rule", None), getattr(r, "image_sha256", None))  # noqa: E731
    assert [strip(r) for r in serial.accepted + serial.rejected] == [
        strip(r) for r in threaded.accepted + threaded.rejected
    ]


def test_image_checked_once_per_file(landing, store, monkeypatch):
    calls = []
    original = imaging.inspect_image
    monkeypatch.setattr(images, "inspect_image", lambda d, **k: calls.append(1) or original(d, **k))
    path = write_jsonl(landing / "o.jsonl", [post(id=f"o{i}") for i in range(5)])
    assert len(check_all(path, store).accepted) == 5 and len(calls) == 1


# Field parsers -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("", None),
        (1704067200, dt.datetime(2024, 1, 1, tzinfo=dt.UTC)),
        ("1704067200.0", dt.datetime(2024, 1, 1, tzinfo=dt.UTC)),
        ("2024-01-01T00:00:00Z", dt.datetime(2024, 1, 1, tzinfo=dt.UTC)),
        ("2024-01-01 02:00:00+02:00", dt.datetime(2024, 1, 1, tzinfo=dt.UTC)),
        ("2024-01-01", dt.datetime(2024, 1, 1, tzinfo=dt.UTC)),
        (dt.datetime(2024, 1, 1), dt.datetime(2024, 1, 1, tzinfo=dt.UTC)),
    ],
)
def test_parse_created_utc(value, expected):
    parsed = rows.parse_created_utc(value)
    assert parsed == expected
    assert parsed is None or parsed.utcoffset() == dt.timedelta(0)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, 0),
        (1, 1),
        (1.0, 1),
        ("0", 0),
        (" 1 ", 1),
        ("REAL", 0),
        ("Fake", 1),
        ("", None),
        (None, None),
    ],
)
def test_parse_label(value, expected):
    assert rows.parse_label(value) == expected


@pytest.mark.parametrize("value", ["maybe", 2, -1, 0.5, "true", True, [1]])
def test_parse_label_refuses(value):
    with pytest.raises(InvalidField) as err:
        rows.parse_label(value)
    assert err.value.rule == "label_invalid"


def test_raw_row_error_keeps_id_for_quarantine():
    ctx = rows.RowContext(folder=".", source="jsonl:x", store=ImageStore("unused"))
    raw = RawRow(4, "raw", {"id": "k1"}, "invalid UTF-8 bytes in field(s) author", "invalid_utf8")
    rejected = rows.check_row(raw, ctx)
    assert (rejected.rule, rejected.post_id, rejected.row_number) == ("invalid_utf8", "k1", 4)


# Unreadable files --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "content", "reason_part"),
    [
        ("data.xlsx", b"id,text,image\n", "unknown file type"),
        ("empty.jsonl", b"", "file is empty"),
        ("blank.csv", b"\n\n  \n", "file is empty"),
        ("broken.parquet", b"PAR1 this is not parquet", "not a readable Parquet file"),
        ("nohead.csv", b"1,hello,images/a.jpg\n", "missing required column"),
        ("cols.csv", b"id,caption,picture\n1,a,b\n", "missing required column(s) image, text"),
        ("dups.csv", b"id,text,image,text\n", "duplicate column name"),
        ("nofake.tsv", b"author\tdomain\nme\tx\n", "missing required Fakeddit column"),
    ],
)
def test_unreadable_files_raise(tmp_path, name, content, reason_part):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(UnreadableFileError) as err:
        readers.read_landing_file(str(tmp_path / name))
    assert reason_part in err.value.reason


def test_missing_parquet_columns_raise(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"id": ["a"], "text": ["b"]}), tmp_path / "noimage.parquet")
    with pytest.raises(UnreadableFileError, match="image"):
        readers.read_landing_file(str(tmp_path / "noimage.parquet"))


def test_header_only_csv_has_no_rows(tmp_path):
    (tmp_path / "h.csv").write_bytes(b"\xef\xbb\xbfid,text,image\r\n")  # with a BOM
    assert readers.read_landing_file(str(tmp_path / "h.csv")).rows == []


def test_content_hash_identifies_the_file(tmp_path):
    (tmp_path / "a.jsonl").write_bytes(b'{"id": 1}\n')
    (tmp_path / "b.jsonl").write_bytes(b'{"id": 1}\n')
    a, b = (readers.read_landing_file(str(tmp_path / n)) for n in ("a.jsonl", "b.jsonl"))
    assert a.content_sha256 == b.content_sha256 and a.size_bytes == 10


# Local storage helpers ---------------------------------------------------------------------------
def test_local_storage_helpers(tmp_path):
    base = str(tmp_path / "zone")
    storage.write_bytes(storage.join(base, "b.jsonl"), b"b")
    storage.write_bytes(storage.join(base, "a.csv"), b"a")
    storage.write_bytes(storage.join(base, "archive", "old.csv"), b"old")
    (tmp_path / "zone" / ".hidden").write_bytes(b"")
    assert storage.list_files(base) == [storage.join(base, n) for n in ("a.csv", "b.jsonl")]
    assert len(storage.list_files(base, recursive=True)) == 3
    assert storage.list_files(str(tmp_path / "absent")) == []
    assert storage.read_bytes(f"file://{base}/a.csv") == b"a"
    moved = storage.move(storage.join(base, "a.csv"), storage.join(base, "archive", "a.csv"))
    assert storage.exists(moved) and not storage.exists(storage.join(base, "a.csv"))
    storage.write_bytes(storage.join(base, "a.csv"), b"second")
    with pytest.raises(FileExistsError):
        storage.move(storage.join(base, "a.csv"), moved)
    assert sorted(os.listdir(base)) == [".hidden", "a.csv", "archive", "b.jsonl"]  # no temp files
    assert storage.parent(moved) == storage.join(base, "archive")
    assert storage.join("gs://bkt/pre/", "images", "x.jpg") == "gs://bkt/pre/images/x.jpg"
    assert storage.parent("gs://bkt/pre/f.csv") == "gs://bkt/pre"


# Decoded-size budget, CSV over-long lines, links in the landing folder ---------------------------
def _encoded(image: Image.Image, fmt: str, **save) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **save)
    return buf.getvalue()


def test_the_decode_budget_counts_decoded_bytes_by_mode_before_decoding():
    """Small on disk, big decoded: a 16-bit PNG and a float TIFF are judged by the bytes their
    pixels take (2 and 4 per pixel), not their file size; a JPEG by its 1/8-scale decode."""
    grey16 = _encoded(Image.fromarray(np.full((1500, 1500), 40000, dtype=np.uint16)), "PNG")
    floats = _encoded(Image.fromarray(np.ones((1000, 1000), dtype=np.float32)), "TIFF",
                      compression="tiff_deflate")  # fmt: skip
    photo = _encoded(Image.new("RGB", (4000, 4000), (9, 9, 9)), "JPEG")
    assert max(len(grey16), len(floats), len(photo)) < 300_000
    budget = 3_000_000
    for data, needed in ((grey16, 1500 * 1500 * 2), (floats, 1000 * 1000 * 4)):
        with pytest.raises(ImageRejected) as err:
            imaging.inspect_image(data, max_pixels=MAX_PIXELS, max_decoded_bytes=budget)
        assert err.value.rule == "image_decoded_too_large"
        assert (
            f"{needed:,} bytes" in err.value.reason
            and "FND_MAX_IMAGE_DECODED_BYTES" in err.value.reason
        )
        info = imaging.inspect_image(data, max_pixels=MAX_PIXELS, max_decoded_bytes=needed)
        assert info.width * info.height * (2 if info.mode.startswith("I;16") else 4) == needed
    info = imaging.inspect_image(photo, max_pixels=MAX_PIXELS, max_decoded_bytes=budget)
    assert (info.width, info.height) == (4000, 4000)  # 64 MB at full size, 1 MB at 1/8


def test_a_16_bit_picture_under_the_budget_is_accepted_upright_without_widening():
    image = Image.fromarray(np.arange(64 * 32, dtype=np.uint16).reshape(32, 64) * 30)
    info = imaging.inspect_image(_encoded(image, "PNG"), max_pixels=MAX_PIXELS,
                                 max_decoded_bytes=64 * 32 * 2)  # fmt: skip
    assert (info.width, info.height, info.mode) == (64, 32, "I;16")


def test_a_csv_line_longer_than_the_cap_is_one_row_too_long_row(landing: Path):
    path = landing / "long.csv"
    path.write_bytes(
        b"id,text,image\n"
        b"a1,fine,images/ok0.jpg\n"
        b"a2," + b"z" * 5000 + b",images/ok0.jpg\n"
        b"a3,also fine,images/ok1.jpg\n"
    )
    read = readers.read_landing_file(str(path), limits=readers.RowLimits(1000, 64))
    rows_read = read.rows
    assert [(r.row_number, r.error_rule) for r in rows_read] == [
        (1, None), (2, "row_too_long"), (3, None)
    ]  # fmt: skip
    long_row = rows_read[1]
    data = path.read_bytes()
    assert data[long_row.byte_offset : long_row.byte_offset + long_row.n_bytes] == (
        b"a2," + b"z" * 5000 + b",images/ok0.jpg"
    )
    assert len(long_row.raw) == 64 and rows_read[2].fields["id"] == "a3"


def test_moves_never_follow_a_link_below_the_root(tmp_path: Path):
    from fnd_core.io import localfs

    root, elsewhere = tmp_path / "landing", tmp_path / "elsewhere"
    (root / "sub").mkdir(parents=True)
    elsewhere.mkdir()
    (root / "a.jsonl").write_text("a")
    (root / "failed").symlink_to(elsewhere)
    (root / "sub" / "archive").symlink_to(elsewhere)
    (root / "linked").symlink_to(root / "sub")
    for dst in ("failed/a.jsonl", "sub/archive/a.jsonl", "linked/archive2/a.jsonl"):
        with pytest.raises(localfs.UnsafePathError, match="symbolic link"):
            localfs.move(str(root / "a.jsonl"), str(root / dst), str(root))
    with pytest.raises(localfs.UnsafePathError):
        localfs.write_new(str(root / "failed" / "x.pth"), b"import os", str(root))
    (root / "ok").mkdir()
    (root / "ok" / "note.txt").symlink_to(elsewhere / "target.txt")
    with pytest.raises(FileExistsError):  # a link where the note would go: never written through
        localfs.write_new(str(root / "ok" / "note.txt"), b"x", str(root))
    assert list(elsewhere.iterdir()) == [] and (root / "a.jsonl").read_text() == "a"
    localfs.move(str(root / "a.jsonl"), str(root / "archive" / "a.jsonl"), str(root))
    assert (root / "archive" / "a.jsonl").read_text() == "a"
    with pytest.raises(FileExistsError):
        (root / "b").write_text("b")
        localfs.move(str(root / "b"), str(root / "archive" / "a.jsonl"), str(root))


def test_a_listing_names_every_entry_by_its_own_kind_and_follows_nothing(tmp_path: Path):
    from fnd_core.io import localfs

    folder = tmp_path / "landing"
    (folder / "archive").mkdir(parents=True)
    (folder / "a.jsonl").write_text("{}")
    (folder / "loop").symlink_to("loop")
    (folder / "to-dir").symlink_to(tmp_path)
    os.mkfifo(folder / "fifo")
    (folder / ".hidden.jsonl").write_text("in progress")
    (folder / "images").symlink_to("archive")  # a folder link inside: a sub-folder, not listed
    assert localfs.list_entries(str(folder)) == [
        ("a.jsonl", "file"), ("fifo", "fifo"), ("loop", "symlink"), ("to-dir", "symlink")
    ]  # fmt: skip
    assert localfs.list_entries(str(tmp_path / "missing")) == []


def test_a_parquet_value_python_cannot_hold_costs_its_row_only(landing: Path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({
        "id": ["p1", "p2", "p3"],
        "text": ["one", "two", "three"],
        "image": ["images/ok0.jpg"] * 3,
        "seen": pa.array([0, 10**15, 60], pa.timestamp("s")),  # p2: past year 9999
    })  # fmt: skip
    pq.write_table(table, landing / "odd.parquet")
    read = readers.read_landing_file(str(landing / "odd.parquet"))
    assert [(r.row_number, r.error_rule) for r in read.rows] == [
        (1, None), (2, "value_unreadable"), (3, None)
    ]  # fmt: skip
    assert read.rows[2].fields["id"] == "p3" and read.rows[0].sha256 is not None
