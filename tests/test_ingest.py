"""Ingest into Postgres: every row accounted for, nothing twice, bad files kept aside."""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import os
import shutil
import stat
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from PIL import Image

from fnd_core.ingest.load import BatchRejectedError, ingest_file, list_new_files
from fnd_core.stack.demo import generate_batch
from tests.media import jpeg_bytes, noisy_jpeg, png_bytes, png_header_only, write_jsonl

pytestmark = pytest.mark.slow  # each ingest runs a Great Expectations validation

GOOD_TEXTS = {
    "good-ascii": "Officials confirm three red circles over the harbour",
    "good-emoji": "Flood waters rise 🌊🚨 — residents told to leave",
    "good-rtl": "שלום עולם: هذا خبر عاجل",
    "good-combining": "Cafe\u0301 owner says \u201cno comment\u201d",
    "good-cmyk": "A CMYK photo from a print agency",
    "good-16bit": "A 16-bit scan from the archive",
    "good-alpha": "A logo with a transparent background",
    "good-palette": "A GIF-style palette image",
    "good-exif": "A phone photo stored sideways",
    "dup-1": "This post was loaded yesterday",
}
BAD_ROWS = {  # post id (or None) -> the rule its row must be quarantined under
    "bad-missing-text": "text_missing",
    "bad-empty-text": "text_empty",
    "bad-huge-text": "text_too_long",
    "bad-nul": "text_nul_byte",
    "bad-no-image": "image_missing",
    "bad-zero-byte": "image_empty",
    "bad-truncated": "image_truncated",
    "bad-fake-image": "image_not_an_image",
    "bad-huge-dims": "image_too_large",
    "bad-timestamp": "created_utc_invalid",
    "bad-label": "label_invalid",
    "good-ascii": "id_duplicate_in_file",  # a second row reusing a good row's id
}


def _exif_rotated() -> bytes:
    image = Image.new("RGB", (40, 20), (0, 0, 255))
    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    image.save(buf, format="JPEG", exif=exif.tobytes())
    return buf.getvalue()


def _images(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    files = {
        "ok.jpg": noisy_jpeg(seed=1),
        "ok2.jpg": noisy_jpeg(seed=2),
        "cmyk.jpg": jpeg_bytes(mode="CMYK", colour=(0, 255, 255, 0)),
        "16bit.png": png_bytes(Image.fromarray(np.full((8, 8), 30000, dtype=np.uint16))),
        "alpha.png": png_bytes(Image.new("RGBA", (8, 8), (0, 0, 255, 128))),
        "palette.png": png_bytes(Image.new("P", (8, 8), 3)),
        "exif.jpg": _exif_rotated(),
        "empty.jpg": b"",
        "truncated.jpg": noisy_jpeg(side=128, seed=3)[:600],
        "fake.jpg": b"<html>not an image</html>",
        "bomb.png": png_header_only(50_000, 50_000),
    }
    for name, data in files.items():
        (folder / name).write_bytes(data)


def mixed_batch(landing: Path) -> Path:
    """Good rows and one of every kind of bad row; the ground truth is in the dicts above."""
    _images(landing / "images")
    img = {
        "good-cmyk": "cmyk.jpg", "good-16bit": "16bit.png", "good-alpha": "alpha.png",
        "good-palette": "palette.png", "good-exif": "exif.jpg",
    }  # fmt: skip
    records: list = [
        {"id": pid, "text": f"  {text}\n", "image": f"images/{img.get(pid, 'ok.jpg')}",
         "created_utc": 1700000000, "label": "fake" if i % 2 else 0}
        for i, (pid, text) in enumerate(GOOD_TEXTS.items())
    ]  # fmt: skip
    base = {"image": "images/ok2.jpg", "text": "a caption"}
    records += [
        b'{"id": "broken", "text": "unterminated',  # broken JSON line
        {"id": "bad-missing-text", "image": "images/ok2.jpg"},
        {**base, "id": "bad-empty-text", "text": "   "},
        {**base, "id": "bad-huge-text", "text": "x" * 1_000_000},
        {**base, "id": "bad-nul", "text": "nul\x00byte"},
        b'{"id": "bad-utf8", "text": "caf\xe9 latin-1", "image": "images/ok2.jpg"}',
        {**base, "id": "bad-no-image", "image": "images/nowhere.jpg"},
        {**base, "id": "bad-zero-byte", "image": "images/empty.jpg"},
        {**base, "id": "bad-truncated", "image": "images/truncated.jpg"},
        {**base, "id": "bad-fake-image", "image": "images/fake.jpg"},
        {**base, "id": "bad-huge-dims", "image": "images/bomb.png"},
        {**base, "id": "bad-timestamp", "created_utc": "yesterday"},
        {**base, "id": "bad-label", "label": "maybe"},
        {**base, "text": "no id at all"},
        {**base, "id": "good-ascii", "text": "same id again"},
    ]
    return write_jsonl(landing / "mixed.jsonl", records)


def rows_in(engine, sql: str, **params):
    with engine.connect() as conn:
        return conn.execute(sa.text(sql), params).all()


def table_counts(engine) -> dict[str, int]:
    tables = ["posts", "quarantine", "ingest_batches", "validation_runs"]
    return {t: rows_in(engine, f"select count(*) from fnd.{t}")[0][0] for t in tables}


@pytest.mark.parametrize("chunk_rows", [2000, 4])
def test_mixed_batch_accounts_for_every_row(clean_db, settings, monkeypatch, chunk_rows):
    """Also read in chunks of 4 rows: ids claimed, images shared and counts kept across chunks."""
    from fnd_core.ingest import staging

    monkeypatch.setattr(staging, "CHUNK_ROWS", chunk_rows)
    landing = Path(settings.landing)
    landing.mkdir(parents=True)
    (landing / "images").mkdir()
    (landing / "images" / "ok.jpg").write_bytes(noisy_jpeg(seed=9))
    earlier = write_jsonl(landing / "earlier.jsonl", [
        {"id": "dup-1", "text": "loaded yesterday", "image": "images/ok.jpg"}
    ])  # fmt: skip
    ingest_file(clean_db, str(earlier), settings)

    report = ingest_file(clean_db, str(mixed_batch(landing)), settings, fail_share=0.9)

    assert report.status == "loaded"
    assert report.n_received == len(GOOD_TEXTS) + 15
    assert report.n_received == report.n_accepted + report.n_quarantined + report.n_duplicate
    assert (report.n_accepted, report.n_duplicate) == (len(GOOD_TEXTS) - 1, 1)
    quarantine = rows_in(
        clean_db, "select post_id, rule, reason, raw from fnd.quarantine where batch_id = :b",
        b=report.batch_id,
    )  # fmt: skip
    assert len(quarantine) == report.n_quarantined == 15
    by_id = {(pid, rule) for pid, rule, _, _ in quarantine}
    assert {(pid, rule) for pid, rule in BAD_ROWS.items()} <= by_id
    rules = {rule for _, rule, _, _ in quarantine}
    assert {"parse_error", "id_missing"} <= rules
    assert any(rule in ("invalid_utf8", "text_invalid_utf8") for rule in rules)
    for _, rule, reason, raw in quarantine:
        assert len(reason.split()) >= 3 and not reason.startswith(rule), (rule, reason)
        assert raw  # verbatim row kept
    huge = next(raw for pid, _, _, raw in quarantine if pid == "bad-huge-text")
    assert len(huge) == settings.quarantine_excerpt_bytes  # an excerpt; the row is in archive/

    stored = dict(rows_in(clean_db, "select post_id, text from fnd.posts"))
    for pid, text in GOOD_TEXTS.items():
        if pid != "dup-1":
            assert stored[pid] == text  # trimmed, otherwise byte-exact
    assert stored["dup-1"] == "loaded yesterday"  # a duplicate never changes the post
    width, height = rows_in(
        clean_db, "select image_width, image_height from fnd.posts where post_id = 'good-exif'"
    )[0]
    assert (width, height) == (20, 40)  # EXIF orientation applied

    batch = rows_in(
        clean_db,
        "select status, n_received, n_accepted, n_quarantined, n_duplicate "
        "from fnd.ingest_batches where batch_id = :b",
        b=report.batch_id,
    )[0]
    assert tuple(batch) == ("loaded", report.n_received, report.n_accepted, 15, 1)


def test_duplicate_with_new_label_updates_the_label(clean_db, settings):
    landing = Path(settings.landing)
    (landing / "images").mkdir(parents=True)
    (landing / "images" / "ok.jpg").write_bytes(noisy_jpeg(seed=4))
    row = {"id": "p-1", "text": "caption", "image": "images/ok.jpg"}
    ingest_file(clean_db, str(write_jsonl(landing / "a.jsonl", [row])), settings)
    report = ingest_file(
        clean_db, str(write_jsonl(landing / "b.jsonl", [{**row, "label": "fake"}])), settings
    )
    assert (report.n_duplicate, report.n_labels_updated) == (1, 1)
    label, updated = rows_in(clean_db, "select label, label_updated_at from fnd.posts")[0]
    assert label == 1 and updated is not None


def test_same_file_twice_adds_nothing(clean_db, settings):
    batch = generate_batch(Path(settings.landing), 30, seed=21)
    kept = batch.data_file.read_bytes()
    first = ingest_file(clean_db, str(batch.data_file), settings)
    assert first.status == "loaded" and not batch.data_file.exists()  # moved to archive/
    before = table_counts(clean_db)

    batch.data_file.write_bytes(kept)  # the very same bytes land again
    second = ingest_file(clean_db, str(batch.data_file), settings)

    assert second.status == "skipped" and "same content" in second.reason
    assert table_counts(clean_db) == before
    assert sorted(p.name for p in (Path(settings.landing) / "archive").iterdir()) == [
        f"batch{first.batch_id}-{batch.data_file.name}",
        f"batch{first.batch_id}-{batch.data_file.name}.1",
    ]


def test_fakeddit_tsv_loads_with_the_right_labels(clean_db, settings):
    batch = generate_batch(Path(settings.landing), 40, seed=5, fmt="fakeddit")
    with batch.data_file.open(encoding="utf-8", newline="") as f:
        truth = {r["id"]: 1 - int(r["2_way_label"]) for r in csv.DictReader(f, delimiter="\t")}
    report = ingest_file(clean_db, str(batch.data_file), settings)
    assert report.format == "fakeddit" and report.n_accepted == 40
    labels = dict(rows_in(clean_db, "select post_id, label from fnd.posts"))
    assert labels == truth
    assert sum(labels.values()) == batch.n_fake


def test_too_many_bad_rows_fail_the_file_loudly(clean_db, settings):
    landing = Path(settings.landing)
    landing.mkdir(parents=True)
    bad = write_jsonl(landing / "bad.jsonl", [b"{not json"] * 4 + [{"id": "x", "text": "t"}])
    with pytest.raises(BatchRejectedError, match="quarantined") as err:
        ingest_file(clean_db, str(bad), settings)
    report = err.value.report
    assert report.status == "failed" and not bad.exists()
    moved = Path(report.moved_to)
    assert moved.parent.name == "failed" and moved.exists()
    assert "threshold" in Path(str(moved) + ".reason.txt").read_text()
    assert rows_in(clean_db, "select count(*) from fnd.posts")[0][0] == 0
    status, error, n_q = rows_in(
        clean_db, "select status, error, n_quarantined from fnd.ingest_batches"
    )[0]
    assert status == "failed" and "threshold" in error and n_q == 5


def test_unparseable_file_is_kept_aside_with_its_reason(clean_db, settings):
    landing = Path(settings.landing)
    landing.mkdir(parents=True)
    (landing / "notes.txt").write_text("hello")
    [uri] = list_new_files(str(landing), settings)
    with pytest.raises(BatchRejectedError, match="unknown file type"):
        ingest_file(clean_db, uri, settings)
    assert (landing / "failed").exists() and not (landing / "notes.txt").exists()
    assert rows_in(clean_db, "select status from fnd.ingest_batches")[0][0] == "failed"


@pytest.mark.timeout(60)
def test_landing_entries_that_are_not_plain_files_are_set_aside_unread(
    clean_db, settings, tmp_path
):
    """A device, a pipe, links (out of the folder, to a device) and an oversized file: each
    recorded as a failed batch and moved itself to failed/ with a reason, never opened
    (reading /dev/zero or a FIFO would never end)."""
    landing = Path(settings.landing)
    landing.mkdir(parents=True)
    outside = tmp_path / "elsewhere.jsonl"
    outside.write_text('{"id": "o1", "text": "secret from another folder", "image": "x.jpg"}\n')
    os.mknod(landing / "zero.jsonl", stat.S_IFCHR | 0o600, os.makedev(1, 5))  # a /dev/zero
    (landing / "devzero.jsonl").symlink_to("/dev/zero")
    (landing / "out.jsonl").symlink_to(outside)
    os.mkfifo(landing / "pipe.csv")
    (landing / "big.jsonl").write_bytes(b"{}\n" * 400)
    limited = dataclasses.replace(settings, max_landing_bytes=1000)
    reasons = {}
    for uri in list_new_files(str(landing), limited):
        with pytest.raises(BatchRejectedError) as err:
            ingest_file(clean_db, uri, limited)
        reasons[Path(uri).name] = err.value.report.reason
    assert set(reasons) == {"zero.jsonl", "devzero.jsonl", "out.jsonl", "pipe.csv", "big.jsonl"}
    for name in ("out.jsonl", "devzero.jsonl"):
        assert "symbolic link" in reasons[name]
    for name in ("zero.jsonl", "pipe.csv"):
        assert "not a regular file" in reasons[name]
    assert "over FND_MAX_LANDING_BYTES" in reasons["big.jsonl"]
    assert sorted(p.name for p in landing.iterdir() if p.name != "failed") == []
    assert outside.exists()  # the link was moved, not what it pointed at
    assert rows_in(clean_db, "select count(*) from fnd.posts")[0][0] == 0
    recorded = rows_in(clean_db, "select status, content_sha256 from fnd.ingest_batches")
    assert recorded == [("failed", None)] * 5  # each once, with no hash: none was read


def test_an_overlong_row_is_quarantined_and_the_rest_loads(clean_db, settings):
    """A row over FND_MAX_ROW_BYTES is one row_too_long row, measured and recoverable."""
    settings = dataclasses.replace(settings, max_row_bytes=4096)
    batch = generate_batch(Path(settings.landing), 6, seed=5)
    lines = batch.data_file.read_bytes().splitlines(keepends=True)
    huge = json.dumps({"id": "huge", "text": "x" * 50_000, "image": "i.jpg"}).encode() + b"\n"
    batch.data_file.write_bytes(b"".join(lines[:3]) + huge + b"".join(lines[3:]))
    report = ingest_file(clean_db, str(batch.data_file), settings)
    assert (report.n_accepted, report.rules) == (6, {"row_too_long": 1})
    [(row_number, reason, raw, n_bytes, sha, offset)] = rows_in(
        clean_db,
        "select row_number, reason, raw, raw_n_bytes, raw_sha256, raw_byte_offset "
        "from fnd.quarantine",
    )
    assert row_number == 4 and "longer than 4096 bytes" in reason
    assert len(raw) == settings.quarantine_excerpt_bytes
    archived = Path(report.moved_to).read_bytes()
    assert archived[offset : offset + n_bytes] + b"\n" == huge
    assert hashlib.sha256(huge[:-1]).hexdigest() == sha


def test_a_file_that_changes_while_read_writes_nothing_and_stays(clean_db, settings, monkeypatch):
    from fnd_core.ingest import readers

    batch = generate_batch(Path(settings.landing), 8, seed=6)
    real_read = readers.read_landing_file

    def read_then_append(uri, **kwargs):
        landing = real_read(uri, **kwargs)
        with open(uri, "ab") as f:  # the writer was not done after all
            f.write(b'{"id": "late", "text": "appended after hashing", "image": "i.jpg"}\n')
        return landing

    monkeypatch.setattr(readers, "read_landing_file", read_then_append)
    with pytest.raises(readers.FileChangedError, match="changed while it was read"):
        ingest_file(clean_db, str(batch.data_file), settings)
    assert batch.data_file.exists()
    assert table_counts(clean_db) == {"posts": 0, "quarantine": 0, "ingest_batches": 0,
                                      "validation_runs": 0}  # fmt: skip
    monkeypatch.setattr(readers, "read_landing_file", real_read)
    again = ingest_file(clean_db, str(batch.data_file), settings)
    assert (again.n_received, again.n_accepted) == (9, 8)  # the late row is read this time


def test_each_validation_has_a_row_and_data_docs(clean_db, settings):
    report = ingest_file(
        clean_db, str(generate_batch(Path(settings.landing), 20, seed=8).data_file), settings
    )
    [(suite, success, n, docs, results)] = rows_in(
        clean_db,
        "select suite, success, n_evaluated_rows, data_docs_uri, results "
        "from fnd.validation_runs where batch_id = :b",
        b=report.batch_id,
    )
    assert (suite, success, n) == ("posts", True, 20)
    assert Path(docs).is_file() and "<html" in Path(docs).read_text().lower()
    assert all(r["success"] for r in results)
    json.dumps(results)


def test_list_new_files_skips_subfolders(settings):
    landing = Path(settings.landing)
    generate_batch(landing, 3, seed=1)
    (landing / "archive").mkdir()
    (landing / "archive" / "old.jsonl").write_text("{}")
    assert [Path(u).name for u in list_new_files(str(landing), settings)] == ["demo_s1.jsonl"]
    shutil.rmtree(landing)
    assert list_new_files(str(landing), settings) == []


def test_trigger_paths_stay_in_the_landing_zone_and_never_touch_the_store(settings, tmp_path):
    from fnd_core.ingest.load import PathNotAllowedError, allowed_landing_path

    landing = Path(settings.landing)
    (landing / "sub").mkdir(parents=True)
    assert allowed_landing_path(str(landing / "sub"), settings) == str(landing / "sub")
    models = Path(settings.store) / "models"
    models.mkdir(parents=True)
    (landing / "to_store").symlink_to(models)  # a link in the zone does not open the store
    for path in (str(models), str(landing / "to_store"), str(settings.home / "pgdata")):
        with pytest.raises(PathNotAllowedError, match="fnd's own data"):
            allowed_landing_path(path, settings, operator=True)
    with pytest.raises(PathNotAllowedError, match="not inside the landing zone"):
        allowed_landing_path(str(tmp_path / "elsewhere"), settings)
    assert allowed_landing_path(str(tmp_path / "elsewhere"), settings, operator=True)
    roots = dataclasses.replace(settings, landing_roots=str(tmp_path / "elsewhere"))
    assert allowed_landing_path(str(tmp_path / "elsewhere" / "a.jsonl"), roots)


def test_a_file_still_being_written_is_left_for_the_next_run(tmp_path, monkeypatch):
    """A file changed within the settle window is left; one that stayed the same, fresh or
    old, is taken. The wait itself is where the writer appends: no timing involved."""
    import os
    import time

    from fnd_core.ingest import load

    old, fresh, growing = (tmp_path / f"{n}.jsonl" for n in ("old", "fresh", "growing"))
    for path in (old, fresh, growing):
        path.write_text("{}\n")
    os.utime(old, (time.time() - 3600, time.time() - 3600))
    waits = []

    def wait(seconds):  # what the writer does while ingest waits
        waits.append(seconds)
        with growing.open("a") as f:
            f.write("{}\n")

    monkeypatch.setattr(load.time, "sleep", wait)
    files = [str(old), str(fresh), str(growing)]
    assert load.settled_files(files, 30.0) == [str(old), str(fresh)]
    assert len(waits) == 1 and 0 < waits[0] <= 30.0
    assert load.settled_files([str(old)], 30.0) == [str(old)] and len(waits) == 1  # no wait
    monkeypatch.setattr(load.time, "sleep", waits.append)  # the writer has finished
    assert load.settled_files(files, 30.0) == files


def test_hostile_references_are_quarantined_and_nothing_from_outside_is_stored(
    clean_db, settings, tmp_path
):
    """The ingest-level view of the confinement rules (tests/test_landing.py has every case)."""
    import http.server
    import threading

    landing = Path(settings.landing)
    (landing / "images").mkdir(parents=True)
    (landing / "images" / "ok.jpg").write_bytes(noisy_jpeg(seed=1))
    secret = tmp_path / "secret.jpg"
    secret.write_bytes(noisy_jpeg(seed=2))
    (landing / "images" / "out.jpg").symlink_to(secret)
    hits = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            hits.append(self.path)
            self.send_error(403)  # an answer that used to crash the whole file

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    rows = {
        "good": ("images/ok.jpg", None),
        "zero": ("/dev/zero", "image_outside_zone"),
        "escape": ("../secret.jpg", "image_outside_zone"),
        "link": ("images/out.jpg", "image_outside_zone"),
        "ssrf": (f"http://127.0.0.1:{server.server_port}/x.jpg", "image_remote_refused"),
        "file": (f"file://{secret}", "image_outside_zone"),
    }
    data = write_jsonl(
        landing / "hostile.jsonl",
        [{"id": k, "text": f"caption {k}", "image": ref} for k, (ref, _) in rows.items()],
    )
    try:
        report = ingest_file(clean_db, str(data), settings, fail_share=1.0)
    finally:
        server.shutdown()
    assert (report.n_received, report.n_accepted, report.n_quarantined) == (6, 1, 5)
    with clean_db.connect() as conn:
        quarantined = dict(
            conn.execute(sa.text("select raw::json ->> 'id', rule from fnd.quarantine")).all()
        )
    assert quarantined == {k: rule for k, (_, rule) in rows.items() if rule}
    assert hits == []
    stored = [p.read_bytes() for p in (Path(settings.store) / "images").iterdir()]
    assert stored == [noisy_jpeg(seed=1)]  # only the good picture reached the store


@pytest.mark.parametrize("crash_after_move", [False, True])
def test_a_retry_after_a_crash_past_the_load_reports_the_posts_it_added(
    clean_db, settings, monkeypatch, crash_after_move
):
    """The retry of a task that died after committing (before or after the archive move) says
    "loaded" with the batch's counts, so the DAG still announces the posts; nothing doubles."""
    from fnd_core.ingest import batches

    batch = generate_batch(Path(settings.landing), 40, seed=11)
    real_move = batches.move_aside

    def dies(uri, folder, *args, **kwargs):
        if crash_after_move:
            real_move(uri, folder, *args, **kwargs)
        raise RuntimeError("worker killed")

    monkeypatch.setattr(batches, "move_aside", dies)
    with pytest.raises(RuntimeError, match="worker killed"):
        ingest_file(clean_db, str(batch.data_file), settings, run_id="run-1")
    monkeypatch.setattr(batches, "move_aside", real_move)
    retry = ingest_file(clean_db, str(batch.data_file), settings, run_id="run-1")
    assert (retry.status, retry.n_accepted) == ("loaded", 40)
    assert retry.moved_to and Path(retry.moved_to).exists()
    assert not batch.data_file.exists()
    with clean_db.connect() as conn:
        assert conn.execute(sa.text("select count(*) from fnd.posts")).scalar_one() == 40
        assert conn.execute(sa.text("select count(*) from fnd.ingest_batches")).scalar_one() == 1
        archived = conn.execute(sa.text("select archived_uri from fnd.ingest_batches")).scalar_one()
    assert archived == retry.moved_to
