"""Remote ``http(s)`` images, fetched only from hosts an operator listed — and never inward.

Off by default: a landing file is written by someone else, and a URL in it would make fnd's
workers send requests from inside the network (server-side request forgery). With
``FND_REMOTE_IMAGE_HOSTS`` set, a URL is fetched when its host is listed, and only if every
address the name resolves to is a public one: loopback, private, link-local (cloud metadata
at 169.254.169.254), carrier-grade NAT, multicast and reserved ranges are refused. The
connection goes to the address that was checked (a second DNS answer cannot swap it for an
inside one), redirects are not followed, credentials in URLs are refused, and the body is
read in blocks up to ``FND_MAX_IMAGE_BYTES``, all within one deadline per image
(``FND_REMOTE_IMAGE_TIMEOUT_S``). IPv4 addresses embedded in IPv6 forms (mapped, 6to4, NAT64)
are judged as the IPv4 address they reach; IPv4-compatible and Teredo ones are refused.
"""

from __future__ import annotations

import contextlib
import http.client
import ipaddress
import socket
import ssl
import threading
import time
from urllib.parse import SplitResult, urlsplit

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
    """The body of ``url`` (at most ``max_bytes``), or :class:`ImageRejected` saying why not.

    ``timeout_s`` bounds the whole fetch (connect, TLS, headers, every read together): a
    server that sends a byte a second is cut off at the deadline, not after each read.
    """
    check_url(url, hosts)
    parts = urlsplit(url)
    https = parts.scheme == "https"
    port = parts.port or (443 if https else 80)
    host = parts.hostname
    if host is None:  # check_url refused it already; this tells the type checker
        raise ImageRejected(REFUSED, f"not an http(s) URL with a host: {url[:200]!r}")
    address = public_address(host, port)
    deadline = _Deadline(url, timeout_s)
    try:
        sock = socket.create_connection((address, port), timeout=deadline.left())
        watchdog = threading.Timer(deadline.left(), _cut, args=(sock,))
        watchdog.daemon = True
        watchdog.start()
        try:
            return _exchange(url, parts, host, port, sock, https, max_bytes, deadline)
        finally:
            watchdog.cancel()
            sock.close()
    except ImageRejected:
        raise
    except (OSError, ValueError, http.client.HTTPException) as exc:
        deadline.left()  # past the deadline: that is the reason, whatever the socket said
        raise ImageRejected(
            "image_unreadable", f"cannot fetch image {url[:200]}: {type(exc).__name__}: {exc}"
        ) from exc


def _exchange(
    url: str,
    parts: SplitResult,
    host: str,
    port: int,
    sock: socket.socket,
    https: bool,
    max_bytes: int,
    deadline: _Deadline,
) -> bytes:
    if https:
        sock.settimeout(deadline.left())
        sock = ssl.create_default_context().wrap_socket(sock, server_hostname=host)
    conn = http.client.HTTPConnection(host, port, timeout=deadline.left())
    conn.sock = sock  # connected to the checked address, not to a fresh DNS answer
    try:
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        conn.request("GET", target, headers={"Host": parts.netloc, "User-Agent": "fnd"})
        sock.settimeout(deadline.left())
        response = conn.getresponse()
        return _body(url, response, max_bytes, deadline, sock)
    finally:
        conn.close()


class _Deadline:
    """One fetch's time budget: :meth:`left` is what remains, refused once none does."""

    def __init__(self, url: str, seconds: float) -> None:
        self.url, self.seconds = url, seconds
        self.at = time.monotonic() + seconds

    def left(self) -> float:
        remaining = self.at - time.monotonic()
        if remaining <= 0:
            raise ImageRejected(
                "image_remote_timeout",
                f"fetching {self.url[:200]} took more than FND_REMOTE_IMAGE_TIMEOUT_S "
                f"({self.seconds:g} s) in all",
            )
        return remaining


def _cut(sock: socket.socket) -> None:
    """The watchdog: at the deadline, end whatever read or write is blocked on ``sock``."""
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


def public_address(host: str, port: int) -> str:
    """The first address of ``host`` if every one it resolves to is public; else refused."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ImageRejected("image_unreadable", f"cannot resolve image host {host!r}") from exc
    addresses = [str(info[4][0]) for info in infos]  # an IP address (typed str | int)
    inward = [a for a in addresses if not is_public(a)]
    if inward or not addresses:
        raise ImageRejected(
            REFUSED, f"image host {host!r} resolves to a non-public address: never fetched"
        )
    return addresses[0]


_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")


def is_public(address: str) -> bool:
    """Whether ``address`` is a global unicast address, IPv4 inside IPv6 judged as IPv4.

    Python's ``is_global`` calls ``64:ff9b::7f00:1`` (NAT64), ``2002:7f00:1::1`` (6to4) and
    ``::127.0.0.1`` (IPv4-compatible) global, though each reaches 127.0.0.1: the IPv4 address
    embedded in a mapped, 6to4 or NAT64 form must be public itself; IPv4-compatible, Teredo
    and local-use NAT64 addresses are refused outright.
    """
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.teredo is not None or ip in _NAT64_LOCAL or ip in _IPV4_COMPATIBLE:
            return False
        embedded = ip.ipv4_mapped or ip.sixtofour
        if embedded is None and ip in _NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            ip = embedded
    return ip.is_global and not ip.is_multicast


def _body(
    url: str,
    response: http.client.HTTPResponse,
    max_bytes: int,
    deadline: _Deadline,
    sock: socket.socket,
) -> bytes:
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
    while True:
        sock.settimeout(deadline.left())
        block = response.read1(_BLOCK)  # one receive at most: the deadline is checked between
        if not block:
            break
        size += len(block)
        if size > max_bytes:
            raise ImageRejected("image_too_big", too_big)
        chunks.append(block)
    deadline.left()  # cut off by the watchdog: the body is not whole
    return b"".join(chunks)
