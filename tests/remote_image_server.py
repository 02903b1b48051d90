"""Run inside a network namespace by tests/test_remote_images.py: a public-looking image
host on the namespace's loopback, and fnd's fetcher asked for each of its pages.

Prints one JSON object: page -> "ok:<sha256>" or "<rule>: <reason>".
"""

from __future__ import annotations

import hashlib
import http.server
import json
import sys
import threading
import time

from fnd_core.ingest.remote import fetch
from fnd_core.io.imaging import ImageRejected

ADDRESS, HOST = sys.argv[1], sys.argv[2]
PICTURE = bytes.fromhex(sys.argv[3])


class Pages(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802
        if self.path == "/ok.jpg":
            self._send(200, PICTURE)
        elif self.path == "/moved.jpg":
            self.send_response(302)
            self.send_header("Location", "http://127.0.0.1/secret")
            self.end_headers()
        elif self.path == "/huge.jpg":  # no Content-Length: the cap must hold while reading
            self.send_response(200)
            self.end_headers()
            for _ in range(100):
                self.wfile.write(b"\xff" * 65536)
        elif self.path == "/slow.jpg":
            time.sleep(5)
            self._send(200, PICTURE)
        elif self.path == "/drip.jpg":  # a byte at a time: each read is quick, the whole is not
            self.send_response(200)
            self.send_header("Content-Length", str(len(PICTURE)))
            self.end_headers()
            for i in range(len(PICTURE)):
                self.wfile.write(PICTURE[i : i + 1])
                self.wfile.flush()
                time.sleep(0.1)
        else:
            self._send(500, b"oops")

    def _send(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


server = http.server.ThreadingHTTPServer((ADDRESS, 80), Pages)
threading.Thread(target=server.serve_forever, daemon=True).start()
results = {}
for page in ("ok.jpg", "moved.jpg", "huge.jpg", "slow.jpg", "drip.jpg", "error.jpg"):
    started = time.monotonic()
    try:
        data = fetch(f"http://{HOST}/{page}", max_bytes=1_000_000, timeout_s=1.0,
                     hosts=frozenset({HOST}))  # fmt: skip
        results[page] = "ok:" + hashlib.sha256(data).hexdigest()
    except ImageRejected as exc:
        results[page] = f"{exc.rule}: {exc.reason}"
    results[f"{page} seconds"] = round(time.monotonic() - started, 2)
server.shutdown()
print(json.dumps(results))
