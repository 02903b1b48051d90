"""A landing zone written by an attacker: every entry ends accounted for, nothing escapes.

Each test drops hostile entries into a real landing folder (links that loop, dangle or point
out, FIFOs, sockets, devices, names that are not UTF-8, rows no parser foresaw), ingests with
fnd's own code against a real Postgres, and checks the general property: every entry ends
loaded (each row accepted, quarantined or duplicate) or set aside with a recorded reason;
each link's target is byte-for-byte unchanged and nothing new exists outside the landing zone
and fnd's own folders; a run that set anything aside ends non-zero.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from fnd_core.ingest import staging
from fnd_core.ingest.load import BatchRejectedError, ingest_file, list_new_files
from fnd_core.io import storage
from tests.media import noisy_jpeg

FND = [sys.executable, "-m", "fnd_core.stack.cli"]
HUGE_INT = "9" * 5000


def rows_in(engine, sql: str, **params) -> list:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.text(sql), params).all()]


def snapshot(root: Path, skip: tuple[Path, ...] = ()) -> dict[str, tuple]:
    """Every entry under ``root`` (links not followed): kind and content, to compare later."""
    seen = {}
    for folder, dirs, files in os.walk(root):
        if any(Path(folder).is_relative_to(s) for s in skip):
            dirs[:] = []
            continue
        for name in dirs + files:
            path = os.path.join(folder, name)
            info = os.lstat(path)
            if stat.S_ISLNK(info.st_mode):
                seen[path] = ("link", os.readlink(path))
            elif stat.S_ISREG(info.st_mode):
                seen[path] = ("file", Path(path).read_bytes())
            else:
                seen[path] = (stat.S_IFMT(info.st_mode),)
    return seen


def post(pid: str, **fields) -> bytes:
    return json.dumps({"id": pid, "text": f"caption {pid}", "image": "images/a.jpg", **fields},
                      ensure_ascii=False).encode()  # fmt: skip


def hostile_rows() -> tuple[bytes, dict[str | None, str]]:
    """A JSONL file of good rows and row-level faults, and the rule each fault must get (by
    post id; None for the row whose id cannot be read)."""
    head = b'"text": "t", "image": "images/a.jpg"'
    lines = [
        post("good-1"),
        post("good-2", extra={"nested": [1, 2.5, None]}),
        b'{"id": "huge-int", ' + head + b', "n": ' + HUGE_INT.encode() + b"}",
        post("nul-key", **{"a\u0000b": 1}),
        b'{"id": "surrogate-value", ' + head + b', "note": "\\ud800"}',
        b'{"id": "surrogate-key", ' + head + b', "\\udfff": 1}',
        b'{"id": "surrogate-text", "text": "cap\\udc80tion", "image": "images/a.jpg"}',
        post("nul-nested", deep={"k": ["ok", "n\u0000l"]}),
        post("good-3", score=float("nan"), big=float("inf")),
    ]
    rules = {
        None: "number_too_long",
        "nul-key": "extra_invalid",
        "surrogate-value": "extra_invalid",
        "surrogate-key": "extra_invalid",
        "surrogate-text": "text_invalid_utf8",
        "nul-nested": "extra_invalid",
    }
    return b"\n".join(lines) + b"\n", rules


def hostile_landing(landing: Path, outside: Path) -> dict[str, str]:
    """Fill ``landing`` with good files and every kind of hostile entry; returns the reason
    fragment expected for each entry that must be set aside."""
    (landing / "images").mkdir(parents=True)
    (landing / "images" / "a.jpg").write_bytes(noisy_jpeg(seed=1))
    outside.mkdir()
    (outside / "secret.jsonl").write_bytes(post("secret") + b"\n")
    (outside / "site-packages").mkdir()
    data, _ = hostile_rows()
    (landing / "rows.jsonl").write_bytes(data)
    latin1 = os.fsencode(landing) + b"/caf\xe9 \\x41.jsonl"  # not UTF-8, and a backslash
    Path(os.fsdecode(latin1)).write_bytes(post("latin-1") + b"\n" + post("latin-2") + b"\n")
    (landing / ("n" * 249 + ".jsonl")).write_bytes(post("long-name") + b"\n")  # 255 bytes
    (landing / "-new\nline.jsonl").write_bytes(post("newline-name") + b"\n")
    (landing / "loop.jsonl").symlink_to("loop.jsonl")
    (landing / "ping.csv").symlink_to("pong.csv")
    (landing / "pong.csv").symlink_to("ping.csv")
    (landing / "dangling.jsonl").symlink_to(outside / "nowhere.jsonl")
    (landing / "out.jsonl").symlink_to(outside / "secret.jsonl")
    (landing / "inside.jsonl").symlink_to("rows.jsonl")  # even a link inside is not followed
    (landing / "to-dir").symlink_to(outside / "site-packages")
    os.mkfifo(landing / "pipe.jsonl")
    os.mknod(landing / "null.csv", stat.S_IFCHR | 0o600, os.makedev(1, 3))
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(landing / "sock.jsonl"))
    (landing / "notes.txt").write_text("not a landing format")
    links = ("loop.jsonl", "ping.csv", "pong.csv", "dangling.jsonl", "out.jsonl",
             "inside.jsonl", "to-dir")  # fmt: skip
    expected = dict.fromkeys(links, "symbolic link")
    expected |= {"pipe.jsonl": "fifo", "null.csv": "device", "sock.jsonl": "socket",
                 "notes.txt": "unknown file type"}  # fmt: skip
    return expected


def run_fnd(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if not k.startswith("FND_")} | env
    return subprocess.run([*FND, *args], env=full, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_every_hostile_entry_is_accounted_for_and_the_run_ends_red(clean_db, settings, tmp_path):
    landing, outside = Path(settings.landing), tmp_path / "outside"
    expected = hostile_landing(landing, outside)
    before = snapshot(tmp_path, skip=(landing, settings.home))
    env = {"FND_HOME": str(settings.home), "FND_DATABASE_URL": settings.database_url,
           "FND_LANDING_SETTLE_SECONDS": "0"}  # fmt: skip

    done = run_fnd("ingest", "--fail-share", "0.9", env=env)

    assert done.returncode == 1, done.stdout + done.stderr
    for name, fragment in expected.items():  # the summary names each file and says why
        [line] = [x for x in done.stderr.splitlines() if x.strip().startswith(str(landing / name))]
        assert fragment in line, line
    # What loaded: the good rows of both data files; each row fault quarantined by its rule.
    _, rules = hostile_rows()
    posts = {p for (p,) in rows_in(clean_db, "select post_id from fnd.posts")}
    assert posts == {"good-1", "good-2", "good-3", "latin-1", "latin-2", "long-name",
                     "newline-name"}  # fmt: skip
    quarantined = dict(rows_in(clean_db, "select post_id, rule from fnd.quarantine"))
    assert quarantined == rules
    # Each entry recorded once, with its reason; the odd name in a faithful printable form.
    batches = rows_in(clean_db, "select source_uri, status, error, archived_uri "
                                "from fnd.ingest_batches")  # fmt: skip
    by_name = {Path(uri).name: (status, error, moved) for uri, status, error, moved in batches}
    assert len(batches) == len(expected) + 4
    for name, fragment in expected.items():
        status, error, moved = by_name[name]
        assert status == "failed" and fragment in error and "/failed/" in moved
    assert by_name["caf\\xe9 \\\\x41.jsonl"][0] == "loaded"
    assert by_name["-new\\x0aline.jsonl"][0] == "loaded"  # a newline cannot forge a line
    sources = {s for (s,) in rows_in(clean_db, "select distinct source from fnd.posts")}
    assert sources == {"jsonl:rows.jsonl", "jsonl:caf\\xe9 \\\\x41.jsonl",
                       "jsonl:-new\\x0aline.jsonl", f"jsonl:{'n' * 249}.jsonl"}  # fmt: skip
    # Nothing left in landing; the links themselves moved, never what they point at.
    assert sorted(os.listdir(landing)) == ["archive", "failed", "images"]
    failed = {
        name.split("-", 1)[1]: landing / "failed" / name
        for name in os.listdir(landing / "failed")
        if not name.endswith(".reason.txt")
    }
    assert set(failed) == set(expected)
    assert all(failed[n].is_symlink() for n, f in expected.items() if f == "symbolic link")
    assert os.readlink(failed["loop.jsonl"]) == "loop.jsonl"
    assert stat.S_ISFIFO(os.lstat(failed["pipe.jsonl"]).st_mode)
    archived = [os.fsencode(p.name) for p in (landing / "archive").iterdir()]
    assert len(archived) == 4 and any(n.endswith(b"caf\xe9 \\x41.jsonl") for n in archived)
    assert max(len(n) for n in archived) <= 255 - len(".reason.txt")
    assert snapshot(tmp_path, skip=(landing, settings.home)) == before  # targets untouched
    # A second run finds nothing and records nothing more.
    again = run_fnd("ingest", env=env)
    assert again.returncode == 0 and "no files waiting" in again.stdout
    assert len(rows_in(clean_db, "select batch_id from fnd.ingest_batches")) == len(batches)


@pytest.mark.slow
@pytest.mark.parametrize("folder", ["failed", "archive"])
def test_a_link_where_failed_or_archive_should_be_is_refused_and_nothing_moves(
    clean_db, settings, tmp_path, folder
):
    """``failed/`` or ``archive/`` pointing into site-packages: the move is refused, recorded,
    and nothing is written there (a ``.pth`` there would be code execution)."""
    landing, site = Path(settings.landing), tmp_path / "site-packages"
    (landing / "images").mkdir(parents=True)
    (landing / "images" / "a.jpg").write_bytes(noisy_jpeg(seed=1))
    site.mkdir()
    (landing / folder).symlink_to(site)
    name = "evil.pth.jsonl" if folder == "archive" else "evil.pth"
    (landing / name).write_bytes(post("p1") + b"\n")

    with pytest.raises(BatchRejectedError) as err:
        ingest_file(clean_db, str(landing / name), settings)

    assert "symbolic link" in err.value.report.reason and "not moved" in err.value.report.reason
    assert list(site.iterdir()) == []
    assert (landing / name).read_bytes() == post("p1") + b"\n"  # left where it was
    [(status, error, moved)] = rows_in(
        clean_db, "select status, error, archived_uri from fnd.ingest_batches"
    )
    assert moved is None and f"not moved to {folder}/" in error
    assert status == ("loaded" if folder == "archive" else "failed")


@pytest.mark.slow
def test_a_landing_root_that_is_a_link_an_operator_made_still_works(clean_db, settings, tmp_path):
    real = tmp_path / "real-landing"
    (real / "images").mkdir(parents=True)
    (real / "images" / "a.jpg").write_bytes(noisy_jpeg(seed=1))
    (real / "pics").symlink_to("images")  # a folder link inside the zone: image refs use it
    (real / "a.jsonl").write_bytes(post("p1") + b"\n" + post("p2", image="pics/a.jpg") + b"\n")
    link = tmp_path / "landing-link"
    link.symlink_to(real)
    settings = dataclasses.replace(settings, landing_dir=str(link), landing_settle_seconds=0)
    [uri] = list_new_files(str(link), settings)
    report = ingest_file(clean_db, uri, settings)
    assert (report.status, report.n_accepted) == ("loaded", 2) and (real / "archive").is_dir()
    assert not (real / "a.jsonl").exists() and (real / "pics").is_symlink()


@pytest.mark.slow
def test_any_fault_while_loading_one_file_sets_it_aside_and_the_next_loads(
    clean_db, settings, monkeypatch
):
    """A fault no check foresaw (here: the validation step failing on one file) sets that
    file aside with its reason; the run goes on with the next file."""
    landing = Path(settings.landing)
    (landing / "images").mkdir(parents=True)
    (landing / "images" / "a.jpg").write_bytes(noisy_jpeg(seed=1))
    (landing / "a-boom.jsonl").write_bytes(post("b1") + b"\n")
    (landing / "b-fine.jsonl").write_bytes(post("f1") + b"\n")
    real = staging.validate_posts

    def validate(landing_file, frame, settings_):
        if "boom" in landing_file.uri:
            raise KeyError("a decoder blew up")
        return real(landing_file, frame, settings_)

    monkeypatch.setattr(staging, "validate_posts", validate)
    outcomes = {}
    for uri in list_new_files(
        str(landing), dataclasses.replace(settings, landing_settle_seconds=0)
    ):
        try:
            outcomes[Path(uri).name] = ingest_file(clean_db, uri, settings).status
        except BatchRejectedError as exc:
            outcomes[Path(uri).name] = exc.report.reason
    assert outcomes["b-fine.jsonl"] == "loaded"
    assert (
        "KeyError" in outcomes["a-boom.jsonl"] and "a decoder blew up" in outcomes["a-boom.jsonl"]
    )
    assert rows_in(clean_db, "select post_id from fnd.posts") == [("f1",)]
    statuses = dict(rows_in(clean_db, "select source_uri, status from fnd.ingest_batches"))
    assert statuses == {
        str(landing / "a-boom.jsonl"): "failed",
        str(landing / "b-fine.jsonl"): "loaded",
    }
    assert (landing / "failed").is_dir() and not (landing / "a-boom.jsonl").exists()


@pytest.mark.slow
def test_a_quarantined_row_is_an_excerpt_and_the_whole_row_is_recoverable(clean_db, settings):
    """The quarantine keeps a few KiB of each row with its length, sha256 and offset: the whole
    row is read back from the archived file by (batch_id, row_number)."""
    landing = Path(settings.landing)
    (landing / "images").mkdir(parents=True)
    (landing / "images" / "a.jpg").write_bytes(noisy_jpeg(seed=1))
    big = b'a2,"' + "ü".encode() * 30_000 + b'\nstill the same field",images/a.jpg\r\n'
    data = b"id,text,image\r\n" + b"a1,fine,images/a.jpg\r\n" + big + b"a3,,images/a.jpg\r\n"
    (landing / "rows.csv").write_bytes(data)
    report = ingest_file(clean_db, str(landing / "rows.csv"), settings, fail_share=0.9)
    assert report.rules == {"text_too_long": 1, "text_empty": 1}
    archived = Path(report.moved_to).read_bytes()
    for row_number, expected in ((2, big.removesuffix(b"\r\n")), (3, b"a3,,images/a.jpg")):
        [(raw, n_bytes, sha, offset)] = rows_in(
            clean_db, "select raw, raw_n_bytes, raw_sha256, raw_byte_offset from fnd.quarantine "
            "where batch_id = :b and row_number = :n", b=report.batch_id, n=row_number,
        )  # fmt: skip
        whole = archived[offset : offset + n_bytes]
        assert whole == expected and hashlib.sha256(whole).hexdigest() == sha
        assert len(raw.encode()) <= settings.quarantine_excerpt_bytes + 8
        assert expected.decode().startswith(raw.rstrip("\\xc"))


def test_names_that_are_not_utf8_travel_and_print_faithfully():
    name = os.fsdecode(b"/landing/caf\xe9 \\x41.jsonl")
    assert storage.printable(name) == "/landing/caf\\xe9 \\\\x41.jsonl"
    assert storage.from_portable(storage.portable(name)) == name
    json.dumps(storage.portable(name)).encode("utf-8")  # storable in any JSON store
    assert storage.portable("/landing/ok.jsonl") == "/landing/ok.jsonl"
