"""The subscriber URL guard (SSRF): https only, and only public addresses.

Checked twice: when a subscriber is registered (:func:`check_subscriber_url`, which resolves the
host) and at delivery, against the very address the socket connects to
(:class:`GuardedAdapter`), so a DNS answer that changes between the two (rebinding) gains nothing.
``ALLOW_PRIVATE_URLS`` lifts both checks for development and tests.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import socket
import time
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

log = logging.getLogger(__name__)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))
_SIXTOFOUR = ipaddress.ip_network("2002::/16")
_TEREDO = ipaddress.ip_network("2001::/32")
MAX_URL_LENGTH = 2048


#: Control characters, DEL and whitespace: never part of a URL we pass on or send to.
_CONTROL_OR_SPACE = re.compile(r"[\x00-\x20\x7f-\x9f\s]")


def has_control_or_space(url: str) -> bool:
    """True when ``url`` holds a control character (C0, DEL, C1) or any whitespace."""
    return _CONTROL_OR_SPACE.search(url) is not None


def is_safe_artifact_url(url: object, *, allow_http: bool) -> bool:
    """Whether a vendor artifact or preview URL may be shown to subscribers, the API and the
    dashboard: a string of at most :data:`MAX_URL_LENGTH` characters, ``https`` (plain
    ``http`` too when ``allow_http``, i.e. ``ALLOW_PRIVATE_URLS``), with a host, without
    credentials, control characters or whitespace. ``javascript:``, ``data:``, ``file:`` and
    every other scheme are unsafe.
    """
    if not isinstance(url, str) or not url or len(url) > MAX_URL_LENGTH:
        return False
    if has_control_or_space(url):
        return False
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (parses the port; a bad one raises)
    except ValueError:
        return False
    schemes = ("https", "http") if allow_http else ("https",)
    return (
        parts.scheme.lower() in schemes
        and bool(parts.hostname)
        and not (parts.username or parts.password)
    )


class UnsafeUrl(ValueError):
    """A subscriber URL that runway-relay will not send to; the message says why."""


def forbidden_reason(address: IPAddress) -> str | None:
    """Why ``address`` may not be a webhook target, or None when it is public.

    Refused: loopback, private (RFC 1918, IPv6 unique-local), link-local (169.254.0.0/16 with the
    cloud metadata address, fe80::/10), CGNAT 100.64.0.0/10, multicast, reserved, unspecified,
    and IPv6 forms that embed such an IPv4 address (IPv4-mapped, 6to4, NAT64, Teredo).
    """
    if isinstance(address, ipaddress.IPv6Address):
        embedded: ipaddress.IPv4Address | None = address.ipv4_mapped
        if embedded is None and address in _SIXTOFOUR:
            embedded = address.sixtofour
        if embedded is None and any(address in net for net in _NAT64):
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is None and address in _TEREDO and address.teredo:
            embedded = address.teredo[1]
        if embedded is not None:
            inner = forbidden_reason(embedded)
            return f"embeds {embedded} ({inner})" if inner else None
    checks = (
        ("loopback", address.is_loopback),
        ("link-local", address.is_link_local),
        ("unspecified", address.is_unspecified),
        ("multicast", address.is_multicast),
        ("CGNAT", isinstance(address, ipaddress.IPv4Address) and address in _CGNAT),
        ("private", address.is_private),
        ("reserved", address.is_reserved),
        ("not globally routable", not address.is_global),
    )
    for reason, hit in checks:
        if hit:
            return f"{reason} address"
    return None


def check_subscriber_url(url: str, *, allow_private: bool, resolve: bool = True) -> None:
    """Refuse a URL we will not deliver to.

    :param url: the subscriber's URL.
    :param allow_private: ``ALLOW_PRIVATE_URLS``: permit http and any address.
    :param resolve: look the host up and check every address it resolves to.
    :raises UnsafeUrl: with a message naming the rule broken.
    """
    if len(url) > MAX_URL_LENGTH:
        raise UnsafeUrl(f"URL longer than {MAX_URL_LENGTH} characters")
    if has_control_or_space(url):
        # URL parsers drop some of them (leading ones, tabs, newlines): what is checked would
        # not be what is stored and sent to.
        raise UnsafeUrl("URL holds whitespace or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UnsafeUrl(f"malformed URL: {exc}") from exc
    schemes = ("https", "http") if allow_private else ("https",)
    if parts.scheme not in schemes:
        raise UnsafeUrl(f"scheme must be {' or '.join(schemes)}, not {parts.scheme or 'none'!r}")
    if not parts.hostname:
        raise UnsafeUrl("URL has no host")
    if parts.username or parts.password:
        raise UnsafeUrl("URL must not carry credentials")
    if allow_private:
        return
    host = parts.hostname
    try:
        literal: IPAddress | None = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None:
        reason = forbidden_reason(literal)
        if reason:
            raise UnsafeUrl(f"{host} is a {reason}")
        return
    if host.lower() == "localhost" or host.lower().endswith(".localhost"):
        raise UnsafeUrl(f"{host} is a loopback name")
    if not resolve:
        return
    for address in _resolve(host, port or 443):
        reason = forbidden_reason(address)
        if reason:
            raise UnsafeUrl(f"{host} resolves to {address}, a {reason}")


def _resolve(host: str, port: int) -> list[IPAddress]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise UnsafeUrl(f"cannot resolve {host}: {exc.strerror}") from exc
    return [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]


class ForbiddenAddress(OSError):
    """Raised inside a connection attempt that would reach a forbidden address."""


def refused_by_guard(exc: BaseException) -> bool:
    """True when :class:`ForbiddenAddress` is anywhere in ``exc``'s chain.

    requests and urllib3 wrap the guard's error several times (``__cause__``, ``__context__``,
    ``args``, ``reason``); this walks all of them, each exception once.
    """
    seen: set[int] = set()
    stack: list[object] = [exc]
    while stack:
        item = stack.pop()
        if not isinstance(item, BaseException) or id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, ForbiddenAddress):
            return True
        stack.extend([item.__cause__, item.__context__, *item.args, getattr(item, "reason", None)])
    return False


def _guarded_connect(conn: HTTPConnection) -> socket.socket:
    host = conn._dns_host
    port = conn.port
    last_error: OSError | None = None
    for family, socktype, proto, _, sockaddr in socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM
    ):
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        reason = forbidden_reason(address)
        if reason:
            last_error = ForbiddenAddress(f"{host} resolves to {address}, a {reason}")
            continue
        sock = socket.socket(family, socktype, proto)
        try:
            timeout = conn.timeout
            sock.settimeout(timeout if isinstance(timeout, int | float) else None)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.connect(sockaddr)
            return sock
        except OSError as exc:
            sock.close()
            last_error = exc
    raise last_error or ForbiddenAddress(f"{host} has no usable address")


class _GuardedHTTPConnection(HTTPConnection):
    def _new_conn(self) -> socket.socket:
        return _guarded_connect(self)


class _GuardedHTTPSConnection(HTTPSConnection):
    def _new_conn(self) -> socket.socket:
        return _guarded_connect(self)


class _GuardedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _GuardedHTTPConnection


class _GuardedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _GuardedHTTPSConnection


class GuardedAdapter(HTTPAdapter):
    """A requests adapter that checks, at connect time, the address each socket reaches.

    TLS still verifies the certificate against the URL's host name (SNI is unchanged).
    A refused address surfaces as ``requests.ConnectionError`` whose cause chain holds a
    :class:`ForbiddenAddress`.
    """

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {
            "http": _GuardedHTTPPool,
            "https": _GuardedHTTPSPool,
        }


def guarded_session(*, allow_private: bool, pool_size: int = 4) -> requests.Session:
    """A ``requests`` session as webhook delivery uses it: the connect-time address guard
    (:class:`GuardedAdapter`, unless ``allow_private``), no proxy, netrc or CA settings from the
    environment (``trust_env`` off), no retries."""
    session = requests.Session()
    session.trust_env = False
    adapter_cls = HTTPAdapter if allow_private else GuardedAdapter
    adapter = adapter_cls(pool_connections=8, pool_maxsize=pool_size, max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


class ImageFetchFailed(ValueError):
    """An image URL could not be used. The message is the same whatever went wrong (refused
    address, connection refused, timeout, TLS, an HTTP error, a redirect, too large, not an
    image), so that answers cannot be used to tell hosts or ports apart; the cause is logged."""


IMAGE_FETCH_FAILED = "the image could not be downloaded from that URL as a PNG, JPEG or GIF"


def fetch_image(
    url: str,
    *,
    allow_private: bool,
    max_bytes: int,
    timeout: tuple[float, float] = (5.0, 20.0),
    deadline: float = 30.0,
) -> bytes:
    """Download an image given by an untrusted user (``POST /api/tasks``) the way webhooks are
    delivered: the URL passes :func:`check_subscriber_url` (https, public host; no control
    characters or whitespace), the connection goes through :func:`guarded_session` (the address
    actually connected to is checked, no proxy from the environment), redirects are not
    followed, at most ``max_bytes`` are read within ``deadline`` seconds, and the bytes must
    start like a PNG, JPEG or GIF.

    :param timeout: (connect, read) seconds.
    :returns: the image's bytes.
    :raises UnsafeUrl: the URL itself is refused (nothing was fetched).
    :raises ImageFetchFailed: the download failed, always with :data:`IMAGE_FETCH_FAILED`.
    """
    from client.images import detect_image_type

    if has_control_or_space(url):
        raise UnsafeUrl("URL holds whitespace or control characters")
    check_subscriber_url(url, allow_private=allow_private)
    started = time.monotonic()
    cause = ""
    with guarded_session(allow_private=allow_private, pool_size=1) as session:
        try:
            with session.get(url, stream=True, timeout=timeout, allow_redirects=False) as answer:
                if not 200 <= answer.status_code < 300:
                    cause = f"HTTP {answer.status_code}"
                else:
                    chunks: list[bytes] = []
                    size = 0
                    for chunk in answer.iter_content(64 * 1024):
                        size += len(chunk)
                        if size > max_bytes:
                            cause = f"over {max_bytes} bytes"
                            break
                        if time.monotonic() - started > deadline:
                            cause = f"slower than {deadline:g} s"
                            break
                        chunks.append(chunk)
                    else:
                        data = b"".join(chunks)
                        if detect_image_type(data) is not None:
                            return data
                        cause = "not a PNG, JPEG or GIF"
        except requests.RequestException as exc:
            cause = type(exc).__name__
    log.info("image download failed", extra={"cause": cause[:200]})
    raise ImageFetchFailed(IMAGE_FETCH_FAILED)
