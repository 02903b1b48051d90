"""The ``gs://`` path of the landing helpers, against gcp-storage-emulator on loopback.

The emulator (in-memory, a free port) speaks the GCS JSON API only. Each test stays far below
the 60 s that gcsfs's gRPC bucket-layout probe would stall per call if it were not avoided, and
the timeout marker turns such a regression into a failure rather than a hang.
"""

from __future__ import annotations

import io
import json
import logging
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fnd_core.ingest import readers, rows
from fnd_core.ingest.images import ImageStore
from fnd_core.io import storage

pytest.importorskip("gcp_storage_emulator", reason="dev extra: pip install gcp-storage-emulator")
pytestmark = pytest.mark.timeout(60)
BUCKET = "fnd-test"


@pytest.fixture(scope="module")
def gcs_endpoint() -> Iterator[str]:
    from gcp_storage_emulator.server import create_server

    logging.getLogger("gcp_storage_emulator").setLevel(logging.WARNING)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = create_server("127.0.0.1", port, in_memory=True, default_bucket=BUCKET)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def base() -> str:
    """A fresh prefix per test in the shared bucket."""
    return f"gs://{BUCKET}/{uuid.uuid4().hex[:8]}"


def jpeg(seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="JPEG")
    return buf.getvalue()


def test_storage_round_trip(gcs_endpoint: str, base: str):
    started = time.perf_counter()
    put = lambda uri, data: storage.write_bytes(uri, data, gcs_endpoint=gcs_endpoint)  # noqa: E731
    put(storage.join(base, "b.jsonl"), b"bee")
    put(storage.join(base, "a.csv"), b"ay")
    put(storage.join(base, "archive", "old.csv"), b"old")
    put(storage.join(base, ".partial"), b"")
    assert storage.read_bytes(storage.join(base, "a.csv"), gcs_endpoint=gcs_endpoint) == b"ay"
    assert storage.list_files(base, gcs_endpoint=gcs_endpoint) == [
        f"{base}/a.csv",
        f"{base}/b.jsonl",
    ]
    assert len(storage.list_files(base, gcs_endpoint=gcs_endpoint, recursive=True)) == 3
    assert storage.list_files(f"{base}/absent", gcs_endpoint=gcs_endpoint) == []
    assert storage.is_dir(storage.join(base, "archive"), gcs_endpoint=gcs_endpoint)

    moved = storage.move(f"{base}/a.csv", f"{base}/archive/a.csv", gcs_endpoint=gcs_endpoint)
    assert storage.exists(moved, gcs_endpoint=gcs_endpoint)
    assert not storage.exists(f"{base}/a.csv", gcs_endpoint=gcs_endpoint)
    assert storage.list_files(base, gcs_endpoint=gcs_endpoint) == [f"{base}/b.jsonl"]
    with pytest.raises(FileExistsError):
        storage.move(f"{base}/b.jsonl", f"{base}/archive/old.csv", gcs_endpoint=gcs_endpoint)
    with pytest.raises(FileNotFoundError):
        storage.read_bytes(f"{base}/nothing.csv", gcs_endpoint=gcs_endpoint)
    assert time.perf_counter() - started < 20  # no 60 s bucket-type probe on any call


def test_ingest_rows_from_gcs_into_a_gcs_store(gcs_endpoint: str, base: str):
    landing, store_root = f"{base}/landing", f"{base}/store"
    shared = jpeg(1)
    for name, data in {"a.jpg": shared, "b.jpg": shared, "c.jpg": jpeg(2)}.items():
        storage.write_bytes(f"{landing}/images/{name}", data, gcs_endpoint=gcs_endpoint)
    records = [
        {"id": "g1", "text": "Héllo 👋", "image": "images/a.jpg", "label": "fake"},
        {"id": "g2", "text": "Same picture", "image": "images/b.jpg"},
        {"id": "g3", "text": "By URI", "image": f"{landing}/images/c.jpg", "label": 0},
        {"id": "g4", "text": "Lost", "image": "images/missing.jpg"},
    ]
    body = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode()
    storage.write_bytes(f"{landing}/batch.jsonl", body, gcs_endpoint=gcs_endpoint)

    read = readers.read_landing_file(f"{landing}/batch.jsonl", gcs_endpoint=gcs_endpoint)
    assert (read.format, read.folder, len(read.rows)) == ("jsonl", landing, 4)
    store = ImageStore(store_root, gcs_endpoint=gcs_endpoint)
    result = rows.check_file(read, store, gcs_endpoint=gcs_endpoint, workers=2)
    assert [p.post_id for p in result.accepted] == ["g1", "g2", "g3"]
    assert [(r.post_id, r.rule) for r in result.rejected] == [("g4", "image_missing")]
    first = result.accepted[0]
    assert first.text == "Héllo 👋" and first.image_uri.startswith(f"{store_root}/images/")
    stored = storage.list_files(f"{store_root}/images", gcs_endpoint=gcs_endpoint)
    assert len(stored) == 2  # the shared picture once
    assert storage.read_bytes(first.image_uri, gcs_endpoint=gcs_endpoint) == shared


def test_fakeddit_images_folder_found_on_gcs(gcs_endpoint: str, base: str):
    storage.write_bytes(f"{base}/public_image_set/f1.jpg", jpeg(3), gcs_endpoint=gcs_endpoint)
    tsv = b"id\tclean_title\t2_way_label\nf1\ta caption\t0\n"
    storage.write_bytes(f"{base}/multimodal_test.tsv", tsv, gcs_endpoint=gcs_endpoint)
    read = readers.read_landing_file(f"{base}/multimodal_test.tsv", gcs_endpoint=gcs_endpoint)
    store = ImageStore(f"{base}/store", gcs_endpoint=gcs_endpoint)
    [accepted] = rows.check_file(read, store, gcs_endpoint=gcs_endpoint).accepted
    assert (accepted.post_id, accepted.label) == ("f1", 1)


def test_data_docs_published_to_gcs_are_served_from_there(gcs_endpoint, base, tmp_path,
                                                           monkeypatch):  # fmt: skip
    """FND_DATA_DOCS_URI: the run's page (with its suite's page and the index) is copied to
    gs://, recorded as such, and the plugin reads it back from there, escapes refused."""
    import pandas as pd

    from fnd_core.ingest.quality import validate_frame
    from fnd_core.io import gcp
    from fnd_core.resources import EXPECTATIONS_DIR

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "plugins"))
    from fnd_plugin import files

    gcp.configure(endpoint=gcs_endpoint)
    try:
        frame = pd.DataFrame({"post_id": ["a", "b"], "p_fake": [0.1, 0.9],
                              "label": ["real", "fake"], "is_fake": [0, 1],
                              "undecided": [0, 0]})  # fmt: skip
        summary = validate_frame(frame, "model_outputs", expectations_dir=EXPECTATIONS_DIR,
                                 data_docs_dir=tmp_path / "docs", batch_name="published",
                                 publish_to=f"{base}/docs")  # fmt: skip
        page = str(summary.data_docs_path)
        assert page.startswith(f"{base}/docs/validations/model_outputs/")
        relative = page.removeprefix(f"{base}/docs/")
        data, name = files.published_data_docs(f"{base}/docs", relative)
        assert name.endswith(".html") and b"model_outputs" in data
        for also in ("index.html", "expectations/model_outputs.html"):
            assert files.published_data_docs(f"{base}/docs", also)[0].startswith(b"<")
        for attempt in ("../docs/index.html", "/etc/passwd", "gs://other/x.html",
                        "validations/../../x", "nope.html"):  # fmt: skip
            with pytest.raises(files.NotServable):
                files.published_data_docs(f"{base}/docs", attempt)
    finally:
        gcp.configure(endpoint=None)
