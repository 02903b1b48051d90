"""Remote images: off by default, listed hosts only, never an inside address, capped.

The refusals are checked against a real HTTP server on 127.0.0.1 that must see no request.
The allowed path runs in a network namespace of its own, where a public address
(``93.184.216.34``) sits on the namespace's loopback and ``/etc/netns/<ns>/hosts`` names it:
real DNS resolution, a real socket, no traffic leaving the machine.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from fnd_core.ingest.remote import allowed_hosts, fetch
from fnd_core.io.imaging import ImageRejected
from tests.helpers import recording_server
from tests.media import noisy_jpeg

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def local_server():
    with recording_server(noisy_jpeg(seed=3)) as served:
        yield served


@pytest.mark.parametrize(
    ("url", "listed", "expected"),
    [
        ("http://localhost:{port}/x.jpg", "localhost", "non-public address"),
        ("http://127.0.0.1:{port}/x.jpg", "127.0.0.1", "non-public address"),
        ("http://[::1]:{port}/x.jpg", "::1", "non-public address"),
        ("http://169.254.169.254/latest/meta-data", "169.254.169.254", "non-public address"),
        ("http://10.1.2.3/x.jpg", "10.1.2.3", "non-public address"),
        ("http://[::ffff:127.0.0.1]:{port}/x.jpg", "::ffff:127.0.0.1", "non-public address"),
        ("http://[64:ff9b::7f00:1]:{port}/x.jpg", "64:ff9b::7f00:1", "non-public address"),
        ("http://[2002:7f00:1::1]:{port}/x.jpg", "2002:7f00:1::1", "non-public address"),
        ("http://[::127.0.0.1]:{port}/x.jpg", "::127.0.0.1", "non-public address"),
        ("http://user:pw@localhost:{port}/x.jpg", "localhost", "credentials"),
        ("http://localhost:{port}/x.jpg", "images.example.org", "not in FND_REMOTE_IMAGE_HOSTS"),
        ("http://localhost:{port}/x.jpg", "", "FND_REMOTE_IMAGE_HOSTS is empty"),
    ],
)
def test_inside_addresses_and_unlisted_hosts_are_never_requested(
    local_server, url, listed, expected
):
    port, hits = local_server
    with pytest.raises(ImageRejected) as err:
        fetch(url.format(port=port), max_bytes=10**6, timeout_s=2, hosts=allowed_hosts(listed))
    assert err.value.rule == "image_remote_refused" and expected in err.value.reason
    assert hits == []


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("93.184.216.34", True),
        ("2606:2800:220:1:248:1893:25c8:1946", True),
        ("64:ff9b::5db8:d822", True),  # NAT64 of 93.184.216.34
        ("2002:5db8:d822::1", True),  # 6to4 of 93.184.216.34
        ("::ffff:93.184.216.34", True),
        ("64:ff9b::7f00:1", False),  # NAT64 of 127.0.0.1
        ("64:ff9b::a00:1", False),  # NAT64 of 10.0.0.1
        ("64:ff9b:1::a9fe:a9fe", False),  # local-use NAT64
        ("2002:7f00:1::1", False),  # 6to4 of 127.0.0.1
        ("2002:a9fe:a9fe::1", False),  # 6to4 of the metadata address
        ("::127.0.0.1", False),  # IPv4-compatible
        ("::93.184.216.34", False),  # IPv4-compatible: deprecated, never fetched
        ("2001:0:4136:e378:8000:63bf:80ff:fffe", False),  # Teredo (client 127.0.0.1)
        ("::ffff:10.0.0.1", False),
        ("fe80::1%eth0", False),
        ("fc00::1", False),
        ("100.64.0.1", False),
        ("0.0.0.0", False),
        ("224.0.0.1", False),
    ],
)
def test_every_non_global_address_is_refused_ipv4_inside_ipv6_included(address, public):
    from fnd_core.ingest.remote import is_public

    assert is_public(address) is public


NETNS_ADDRESS, NETNS_HOST = "93.184.216.34", "images.example.org"


@pytest.fixture
def netns():
    if not shutil.which("ip") or subprocess.run(["id", "-u"], capture_output=True,
                                                text=True).stdout.strip() != "0":  # fmt: skip
        pytest.skip("needs root and iproute2 to make a network namespace")
    name = f"fnd{uuid.uuid4().hex[:8]}"
    hosts = Path("/etc/netns") / name / "hosts"
    made = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True)
    if made.returncode:
        pytest.skip(f"cannot make a network namespace here: {made.stderr.strip()}")
    try:
        for cmd in (["ip", "link", "set", "lo", "up"],
                    ["ip", "addr", "add", f"{NETNS_ADDRESS}/32", "dev", "lo"]):  # fmt: skip
            subprocess.run(["ip", "netns", "exec", name, *cmd], check=True)
        hosts.parent.mkdir(parents=True)
        hosts.write_text(f"127.0.0.1 localhost\n{NETNS_ADDRESS} {NETNS_HOST}\n")
        yield name
    finally:
        shutil.rmtree(hosts.parent, ignore_errors=True)
        subprocess.run(["ip", "netns", "delete", name], check=False)


def test_a_listed_public_host_is_fetched_with_caps_timeouts_and_no_redirects(netns):
    picture = noisy_jpeg(seed=5)
    done = subprocess.run(
        ["ip", "netns", "exec", netns, sys.executable, "-m", "tests.remote_image_server",
         NETNS_ADDRESS, NETNS_HOST, picture.hex()],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads(done.stdout.strip().splitlines()[-1])
    assert results["ok.jpg"] == "ok:" + hashlib.sha256(picture).hexdigest()
    assert results["moved.jpg"].startswith("image_remote_refused: ") and "redirect" in results[
        "moved.jpg"]  # fmt: skip
    assert results["huge.jpg"].startswith("image_too_big: ")
    for page in ("slow.jpg", "drip.jpg"):  # one deadline per image, not per read
        assert results[page].startswith("image_remote_timeout: "), results[page]
        assert results[f"{page} seconds"] < 3.0
    assert results["error.jpg"].startswith("image_unreadable: ") and "500" in results["error.jpg"]
