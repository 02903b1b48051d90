"""Remote ``http(s)`` images, fetched only from hosts an operator listed — and never inward.

Off by default: a landing file is written by someone else, and a URL in it would make fnd's
workers send requests from inside the network (server-side request forgery). With
``FND_REMOTE_IMAGE_HOSTS`` set, a URL is fetched when its host is listed, and only if every
address the name resolves to is a public one: loopback, private, link-local (cloud metadata
at 169.254.169.254), carrier-grade NAT, multicast and reserved ranges are refused. The
connection goes to the address that was checked (a second DNS answer cannot swap it for an
inside one), redirects are not followed, credentials in URLs are refused, and the body is
read in blocks up to ``FND_MAX_IMAGE_BYTES`` with connect and read timeouts.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
from urllib.parse import urlsplit

from fnd_core.io.imaging import ImageRejected

REFUSED = "image_remote_refused"
_BLOCK = 64 * 1024


def allowed_hosts(setting: str) -> frozenset[str]:
    """``FND_REMOTE_IMAGE_HOSTS`` (comma-separated host names) as a set of lower-case names."""
    return frozenset(h.strip().lower().rstrip(".") for h in setting.split(",") if h.strip())


def check_url(url: str, hosts: frozenset[str]) -> str:
    """``url`` if its scheme, form and host are allowed (before any DNS look-up)."""
    if not hosts:
        raise ImageRejected(
            REFUSED, "remote image URLs are not fetched (FND_REMOTE_IMAGE_HOSTS is empty): "
            "land the picture beside the landing file"
        )  # fmt: skip
    parts = urlsplit(url)
    host = (parts.hostname or "").lower().rstrip(".")
    if parts.scheme not in ("http", "https") or not host:
        raise ImageRejected(REFUSED, f"not an http(s) URL with a host: {url[:200]!r}")
    if parts.username or parts.password:
        raise ImageRejected(REFUSED, "image URLs with credentials in them are refused")
    if host not in hosts:
        raise ImageRejected(REFUSED, f"host {host!r} is not in FND_REMOTE_IMAGE_HOSTS")
    return url


def fetch(url: str, *, max_bytes: int, timeout_s: float, hosts: frozenset[str]) -> bytes:
    """The body of ``url`` (at most ``max_bytes``), or :class:`ImageRejected` saying why not."""
    check_url(url, hosts)
    parts = urlsplit(url)
    https = parts.scheme == "https"
    port = parts.port or (443 if https else 80)
    address = public_address(parts.hostname, port)
    try:
        sock = socket.create_connection((address, port), timeout=timeout_s)
        if https:
            sock = ssl.create_default_context().wrap_socket(sock, server_hostname=parts.hostname)
        conn = http.client.HTTPConnection(parts.hostname, port, timeout=timeout_s)
        conn.sock = sock  # connected to the checked address, not to a fresh DNS answer
        path = parts.path or "/"
        target = path + (f"?{parts.query}" if parts.query else "")
        conn.request("GET", target, headers={"Host": parts.netloc, "User-Agent": "fnd"})
        response = conn.getresponse()
        try:
            return _body(url, response, max_bytes)
        finally:
            conn.close()
    except ImageRejected:
        raise
    except (OSError, http.client.HTTPException) as exc:
        raise ImageRejected(
            "image_unreadable", f"cannot fetch image {url[:200]}: {type(exc).__name__}: {exc}"
        ) from exc


def public_address(host: str, port: int) -> str:
    """The first address of ``host`` if every one it resolves to is public; else refused."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ImageRejected("image_unreadable", f"cannot resolve image host {host!r}") from exc
    addresses = [info[4][0] for info in infos]
    inward = [a for a in addresses if not _is_public(a)]
    if inward or not addresses:
        raise ImageRejected(
            REFUSED, f"image host {host!r} resolves to a non-public address: never fetched"
        )
    return addresses[0]


def _is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def _body(url: str, response: http.client.HTTPResponse, max_bytes: int) -> bytes:
    if 300 <= response.status < 400:
        raise ImageRejected(REFUSED, f"image URL answered a redirect ({response.status}): "
                                     "redirects are not followed")  # fmt: skip
    if response.status == 404:
        raise ImageRejected("image_missing", f"image URL answered 404: {url[:200]}")
    if response.status != 200:
        raise ImageRejected(
            "image_unreadable", f"image URL answered HTTP {response.status}: {url[:200]}"
        )
    length = response.getheader("Content-Length")
    too_big = f"image {url[:200]} has more than FND_MAX_IMAGE_BYTES ({max_bytes:,}) bytes"
    if length and length.isdigit() and int(length) > max_bytes:
        raise ImageRejected("image_too_big", too_big)
    chunks, size = [], 0
    while block := response.read(_BLOCK):
        size += len(block)
        if size > max_bytes:
            raise ImageRejected("image_too_big", too_big)
        chunks.append(block)
    return b"".join(chunks)
