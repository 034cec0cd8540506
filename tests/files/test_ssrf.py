"""URL inputs never reach the router's own network: every spelling, every hop, the address that was checked."""

from __future__ import annotations

import io
import socket

import pytest

from generations import downloads
from generations.downloads import DownloadRefused, check_url, fetch
from generations.models import CachedFile
from tests.files.conftest import png

RUN = "/api/endpoints/sd15-img2img/run"

REFUSED = [
    ("http://127.0.0.1/", "loopback"),
    ("http://localhost/", "loopback"),
    ("http://2130706433/", "loopback"),  # decimal
    ("http://0177.0.0.1/", "loopback"),  # octal
    ("http://0x7f.1/", "loopback"),  # hex, short
    ("http://127.1/", "loopback"),  # short
    ("http://0x7f000001/", "loopback"),
    ("http://10.0.0.5/", "private"),
    ("http://172.16.3.4/", "private"),
    ("http://192.168.1.1/", "private"),
    ("http://012.0.0.1/", "private"),  # octal 10.0.0.1
    ("http://169.254.169.254/latest/meta-data/", "link-local"),
    ("http://0251.0376.0251.0376/", "link-local"),  # octal 169.254.169.254
    ("http://224.0.0.1/", "multicast"),
    ("http://240.0.0.1/", "private"),  # reserved 240/4, which Python files under private
    ("http://0.0.0.0/", "unspecified"),
    ("http://0/", "unspecified"),
    ("http://100.64.0.1/", "non-public"),  # carrier-grade NAT
    ("http://[::1]/", "loopback"),
    ("http://[::]/", "unspecified"),
    ("http://[fe80::1]/", "link-local"),
    ("http://[fc00::1]/", "private"),
    ("http://[ff02::1]/", "multicast"),
    ("http://[::ffff:127.0.0.1]/", "loopback: it embeds 127.0.0.1"),  # IPv4-mapped
    ("http://[::ffff:a9fe:a9fe]/", "link-local: it embeds 169.254.169.254"),
    ("http://[::127.0.0.1]/", "loopback: it embeds 127.0.0.1"),  # IPv4-compatible
    ("http://[2002:7f00:1::1]/", "loopback: it embeds 127.0.0.1"),  # 6to4
    ("http://[2002:a00:5::]/", "private: it embeds 10.0.0.5"),
    ("http://[2001:0:4136:e378:8000:63bf:80ff:fffe]/", "loopback: it embeds 127.0.0.1"),  # Teredo
    ("http://[64:ff9b::a9fe:a9fe]/", "link-local: it embeds 169.254.169.254"),  # NAT64
]


@pytest.mark.parametrize(("url", "reason"), REFUSED)
def test_a_non_public_address_is_refused_before_connecting(url, reason, settings, monkeypatch):
    settings.COMFYROUTER_ALLOW_PRIVATE_URLS = False
    monkeypatch.setattr(socket, "create_connection", lambda *a, **k: pytest.fail("connected"))

    with pytest.raises(DownloadRefused, match="COMFYROUTER_ALLOW_PRIVATE_URLS") as refused:
        fetch(url, io.BytesIO(), limit=1024)

    assert f"({reason}" in str(refused.value)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("file:///etc/passwd", "only http and https"),
        ("gopher://127.0.0.1:6379/_FLUSHALL", "only http and https"),
        ("ftp://example.com/a.png", "only http and https"),
        ("http://user:secret@example.com/a.png", "credentials"),
        ("http:///a.png", "no host"),
        ("http://example.com:99999/", "not a valid URL"),
        ("http://no-such-host.invalid/", "does not resolve"),
        ("http://bücher.invalid/", "does not resolve"),  # IDNA-encoded, then resolved
        ("http://[::1/", "not a valid URL"),
        ("http://example.com/" + "a" * 2000, "longer than 2000"),
    ],
)
def test_other_bad_urls_are_refused(url, reason, monkeypatch):
    def no_dns(host, *args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_dns)  # this machine may only talk to loopback
    with pytest.raises(DownloadRefused, match=reason):
        check_url(url)


def test_a_public_address_passes_the_check_unresolved():
    target = check_url("https://93.184.215.14:8443/cat.png?size=2")

    assert (target.scheme, target.port, target.path) == ("https", 8443, "/cat.png?size=2")
    assert target.url_for(target.addresses[0]) == "https://93.184.215.14:8443/cat.png?size=2"


def test_the_allowlist_admits_listed_hosts_and_networks_only(settings):
    settings.COMFYROUTER_URL_ALLOWLIST = ["localhost", "10.1.0.0/16", ".lan"]

    assert check_url("http://localhost/").host == "localhost"
    assert check_url("http://10.1.2.3/").addresses
    assert check_url("http://[::ffff:10.1.2.3]/").addresses
    for url in ("http://10.2.0.1/", "http://127.0.0.1/", "http://169.254.169.254/"):
        with pytest.raises(DownloadRefused):
            check_url(url)


def test_allow_private_urls_admits_everything_but_other_schemes(settings):
    settings.COMFYROUTER_ALLOW_PRIVATE_URLS = True

    assert check_url("http://127.0.0.1:8188/").addresses
    with pytest.raises(DownloadRefused, match="only http"):
        check_url("file:///etc/passwd")


def test_a_redirect_to_a_private_address_is_refused(image_server, settings):
    # The first hop is allowed by name; the second names the same server by its loopback address.
    settings.COMFYROUTER_URL_ALLOWLIST = ["localhost"]
    image_server.serve("/secret.png", png())
    image_server.redirect("/go", f"http://127.0.0.1:{image_server.port}/secret.png")

    with pytest.raises(DownloadRefused, match=r"127\.0\.0\.1 is not a public address \(loopback\)"):
        fetch(f"http://localhost:{image_server.port}/go", io.BytesIO(), limit=10_000)

    assert image_server.hits == {"/go": 1}


@pytest.mark.parametrize("location", ["file:///etc/passwd", "gopher://127.0.0.1:6379/_INFO", "http://[::1]:1/"])
def test_a_redirect_is_checked_like_the_first_url(image_server, allow_local, location):
    image_server.redirect("/jump", location)

    with pytest.raises(DownloadRefused, match="only http and https|loopback"):
        fetch(f"{image_server.url}/jump", io.BytesIO(), limit=10_000)


def test_redirects_are_followed_and_bounded(image_server, allow_local):
    data = png()
    image_server.serve("/final.png", data)
    image_server.redirect("/hop", "/final.png")
    for index in range(7):
        image_server.redirect(f"/loop{index}", f"/loop{index + 1}")
    sink = io.BytesIO()

    download = fetch(f"{image_server.url}/hop", sink, limit=10_000)

    assert sink.getvalue() == data and download.url.endswith("/final.png") and download.name == "final.png"
    with pytest.raises(DownloadRefused, match="more than 5 redirects"):
        fetch(f"{image_server.url}/loop0", io.BytesIO(), limit=10_000)


def test_the_connection_goes_to_the_checked_address(image_server, settings, monkeypatch):
    # DNS rebinding: the name is resolved once, checked, and that address is used; no second lookup.
    settings.COMFYROUTER_URL_ALLOWLIST = ["pinned.test"]
    lookups: list[str] = []
    real = socket.getaddrinfo

    def getaddrinfo(host, *args, **kwargs):
        lookups.append(host)
        return real("127.0.0.1" if host == "pinned.test" else host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    image_server.serve("/p.png", png())

    fetch(f"http://pinned.test:{image_server.port}/p.png", io.BytesIO(), limit=10_000)

    # httpcore passes the literal address through getaddrinfo too; that is no DNS query.
    assert [host for host in lookups if downloads.parse_ip(host) is None] == ["pinned.test"]
    assert image_server.hosts == [f"pinned.test:{image_server.port}"]


@pytest.mark.django_db
def test_a_refused_url_is_a_400_naming_the_input(builtin_endpoints, api_client, settings):
    body = {"inputs": {"prompt": "x", "image": "http://169.254.169.254/latest/meta-data/"}}

    response = api_client.post(RUN, body, format="json")

    assert response.status_code == 400
    [problem] = response.json()["errors"]
    assert problem["field"] == "image" and "link-local" in problem["rule"]
    assert CachedFile.objects.count() == 0


@pytest.mark.parametrize(
    ("disposition", "url", "name"),
    [
        ('attachment; filename="../../etc/passwd"', "http://h/x", "passwd"),
        ("attachment; filename*=UTF-8''caf%C3%A9 photo.png", "http://h/x", "café_photo.png"),
        ("", "http://h/dir/a%2F..%2Fb.png", "b.png"),
        ("", "http://h/", "download"),
        ("", "http://h/..", "download"),
        ('inline; filename="C:\\\\Users\\\\x\\\\.bashrc"', "http://h/x", "bashrc"),
    ],
)
def test_file_names_are_sanitised(disposition, url, name):
    assert downloads.file_name(disposition, url) == name
