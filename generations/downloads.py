"""Fetch a URL input without letting a caller reach the router's own network (SSRF).

Every hop's host is resolved once, every address it resolves to is checked, and the connection
goes to a checked address with the name kept in the Host header and TLS SNI, so a DNS answer
that changes between the check and the connection (rebinding) is never used.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from email.message import Message
from typing import BinaryIO
from urllib.parse import unquote, urljoin, urlsplit

import httpx
from django.conf import settings
from django.core.exceptions import SuspiciousFileOperation
from django.utils.text import get_valid_filename

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

MAX_REDIRECTS = 5
MAX_URL_LENGTH = 2000
CHUNK_BYTES = 64 * 1024
DEFAULT_PORTS = {"http": 80, "https": 443}
# Prefixes that carry an IPv4 address in their low 32 bits (RFC 6052 NAT64, well-known and local-use).
NAT64 = (ipaddress.IPv6Network("64:ff9b::/96"), ipaddress.IPv6Network("64:ff9b:1::/48"))
OPT_IN = "set COMFYROUTER_ALLOW_PRIVATE_URLS or list the host in COMFYROUTER_URL_ALLOWLIST to permit it"


class DownloadRefused(ValueError):
    """A URL the router will not fetch, or a download that failed; the message says why."""


@dataclass(frozen=True)
class Target:
    """One hop, checked: where to connect and what to call the server."""

    scheme: str
    host: str
    port: int
    path: str
    addresses: tuple[IPAddress, ...]

    def url_for(self, address: IPAddress) -> str:
        literal = f"[{address}]" if address.version == 6 else str(address)
        return f"{self.scheme}://{literal}:{self.port}{self.path}"

    @property
    def host_header(self) -> str:
        name = f"[{self.host}]" if ":" in self.host else self.host
        return name if DEFAULT_PORTS[self.scheme] == self.port else f"{name}:{self.port}"


@dataclass(frozen=True)
class Download:
    url: str  # after redirects
    name: str  # sanitised, from Content-Disposition or the URL path
    content_type: str  # as the server claimed it; callers verify the bytes themselves
    size: int
    sha256: str


def fetch(url: str, sink: BinaryIO, *, limit: int, seconds: float | None = None) -> Download:
    """Stream `url` into `sink`, checking every hop: at most `limit` bytes in `seconds`; raises DownloadRefused."""
    seconds = settings.COMFYROUTER_DOWNLOAD_DEADLINE if seconds is None else seconds
    deadline = time.monotonic() + seconds
    timeout = httpx.Timeout(settings.COMFYROUTER_DOWNLOAD_TIMEOUT)
    # trust_env=False: a proxy from the environment would resolve the name again, past our checks.
    with httpx.Client(timeout=timeout, follow_redirects=False, trust_env=False) as client:
        for _hop in range(MAX_REDIRECTS + 1):
            if time.monotonic() > deadline:
                raise DownloadRefused(f"took longer than {seconds} s")
            target = check_url(url)
            with _response(client, target) as response:
                if response.is_redirect and "location" in response.headers:
                    url = urljoin(url, response.headers["location"])
                    continue
                if response.status_code != 200:
                    raise DownloadRefused(f"the server answered HTTP {response.status_code}")
                return _stream(response, sink, url=url, limit=limit, deadline=(deadline, seconds))
    raise DownloadRefused(f"more than {MAX_REDIRECTS} redirects")


def check_url(url: str) -> Target:
    """The hop `url` names, once its scheme and every address of its host are acceptable."""
    scheme, host, port, path = split_url(url)
    addresses = resolve(host, port)
    for address in addresses:
        if (reason := blocked_reason(address)) and not allowed(host, address):
            shown = host if host == str(address) else f"{host} ({address})"
            raise DownloadRefused(f"{shown} is not a public address ({reason}); {OPT_IN}")
    return Target(scheme, host, port, path, addresses)


def split_url(url: str) -> tuple[str, str, int, str]:
    """(scheme, ASCII host, port, path and query) of an http(s) URL without credentials."""
    if len(url) > MAX_URL_LENGTH:
        raise DownloadRefused(f"URL is longer than {MAX_URL_LENGTH} characters")
    try:
        parts = urlsplit(url)
        port = parts.port
        # IDNA: the Host header and SNI take ASCII; "bücher.example" becomes "xn--bcher-kva.example".
        host = (parts.hostname or "").rstrip(".").encode("idna").decode("ascii")
    except (ValueError, UnicodeError):
        raise DownloadRefused("is not a valid URL") from None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise DownloadRefused("only http and https URLs are accepted")
    if parts.username is not None or parts.password is not None:
        raise DownloadRefused("URLs with credentials are not accepted")
    if not host:
        raise DownloadRefused("URL has no host")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return scheme, host, port or DEFAULT_PORTS[scheme], path


def parse_ip(host: str) -> IPAddress | None:
    """The address a host literal stands for, in any spelling C's inet_aton takes (2130706433, 0x7f.1, 127.1)."""
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        pass
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except (OSError, ValueError):
        return None


def resolve(host: str, port: int) -> tuple[IPAddress, ...]:
    """Every address of `host`; a literal is taken as it is, without asking DNS."""
    if (literal := parse_ip(host)) is not None:
        return (literal,)
    try:
        answers = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise DownloadRefused(f"host {host} does not resolve") from None
    # sockaddr[0] may carry an IPv6 zone ("fe80::1%eth0"); the address is what gets checked.
    found = [ipaddress.ip_address(str(answer[4][0]).split("%")[0]) for answer in answers]
    return tuple(dict.fromkeys(found))


def blocked_reason(address: IPAddress) -> str | None:
    """Why an address is off limits (loopback, private, …), or None for a public unicast address."""
    if isinstance(address, ipaddress.IPv6Address) and (inner := embedded_ipv4(address)) is not None:
        # ::ffff:127.0.0.1 reaches 127.0.0.1; 6to4, Teredo and NAT64 wrap an IPv4 address as well.
        if reason := blocked_reason(inner):
            return f"{reason}: it embeds {inner}"
        if address.ipv4_mapped is not None:
            return None
    checks = (
        ("unspecified", address.is_unspecified), ("loopback", address.is_loopback),
        ("link-local", address.is_link_local), ("multicast", address.is_multicast),
        ("private", address.is_private), ("reserved", address.is_reserved),
        ("site-local", getattr(address, "is_site_local", False)), ("non-public", not address.is_global),
    )  # fmt: skip
    return next((name for name, hit in checks if hit), None)


def embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address inside an IPv4-mapped, IPv4-compatible, 6to4, Teredo or NAT64 address."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if (int(address) >> 32 == 0 and int(address) > 1) or any(address in net for net in NAT64):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def allowed(host: str, address: IPAddress) -> bool:
    """Whether the operator permits this internal source: every private URL, or a listed host or network."""
    if settings.COMFYROUTER_ALLOW_PRIVATE_URLS:
        return True
    inner = embedded_ipv4(address) if isinstance(address, ipaddress.IPv6Address) else None
    for entry in settings.COMFYROUTER_URL_ALLOWLIST:
        entry = entry.lower().rstrip(".")
        try:
            network = ipaddress.ip_network(entry.strip("[]"), strict=False)
            if address in network or (inner is not None and inner in network):
                return True
        except ValueError:
            if host.lower() == entry or (entry.startswith(".") and host.lower().endswith(entry)):
                return True
    return False


@contextmanager
def _response(client: httpx.Client, target: Target) -> Iterator[httpx.Response]:
    headers = {"Host": target.host_header, "Accept-Encoding": "identity", "User-Agent": "ComfyRouter"}
    extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
    failure = ""
    for address in target.addresses:
        try:
            request = client.build_request("GET", target.url_for(address), headers=headers, extensions=extensions)
            response = client.send(request, stream=True)
        except httpx.InvalidURL:
            raise DownloadRefused("is not a valid URL") from None
        except httpx.TimeoutException:
            timeout = settings.COMFYROUTER_DOWNLOAD_TIMEOUT
            raise DownloadRefused(f"{target.host} did not answer in {timeout} s") from None
        except httpx.HTTPError as exc:
            failure = f"could not connect to {target.host}: {exc}"
            continue
        try:
            yield response
        finally:
            response.close()
        return
    raise DownloadRefused(failure or f"could not connect to {target.host}")


def _stream(
    response: httpx.Response, sink: BinaryIO, *, url: str, limit: int, deadline: tuple[float, float]
) -> Download:
    too_big = f"is larger than the {limit}-byte download limit"
    announced = response.headers.get("content-length", "")
    if announced.isdigit() and int(announced) > limit:
        raise DownloadRefused(too_big)
    digest, size = hashlib.sha256(), 0
    try:
        for chunk in response.iter_bytes(CHUNK_BYTES):
            size += len(chunk)
            if size > limit:
                raise DownloadRefused(too_big)
            # The read timeout is per chunk; a server dripping bytes is stopped by the overall deadline.
            if time.monotonic() > deadline[0]:
                raise DownloadRefused(f"took longer than {deadline[1]} s")
            digest.update(chunk)
            sink.write(chunk)
    except httpx.TimeoutException:
        raise DownloadRefused(f"the server stalled for {settings.COMFYROUTER_DOWNLOAD_TIMEOUT} s") from None
    except httpx.HTTPError as exc:
        raise DownloadRefused(f"the download failed: {exc}") from None
    name = file_name(response.headers.get("content-disposition", ""), url)
    content_type = response.headers.get("content-type", "").split(";")[0].strip()[:100]
    return Download(url=url, name=name, content_type=content_type, size=size, sha256=digest.hexdigest())


def file_name(disposition: str, url: str, *, default: str = "download") -> str:
    """A safe file name from Content-Disposition, else the URL's last path segment."""
    message = Message()
    message["content-disposition"] = disposition
    raw = (disposition and message.get_filename()) or unquote(urlsplit(url).path.rsplit("/", 1)[-1])
    raw = os.path.basename(str(raw).replace("\\", "/")).lstrip(".")
    try:
        name = get_valid_filename(raw)
    except SuspiciousFileOperation:
        return default
    stem, dot, extension = name.rpartition(".")
    return name[:200] if len(name) <= 200 or not dot else f"{stem[: 190 - len(extension)]}.{extension}"
