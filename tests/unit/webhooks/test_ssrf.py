"""Which webhook destinations are refused, and why."""

from __future__ import annotations

import ipaddress

import pytest

from core.webhooks.ssrf import (
    DestinationRefused,
    check_destination,
    forbidden_reason,
    resolve_destination,
)
from tests.support.webhook_dns import fake_dns

PUBLIC_V4 = "93.184.216.34"
PUBLIC_V6 = "2606:2800:220:1:248:1893:25c8:1946"


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        pytest.param("127.0.0.1", "loopback", id="loopback"),
        pytest.param("127.5.6.7", "loopback", id="loopback-range"),
        pytest.param("::1", "loopback", id="loopback-v6"),
        pytest.param("10.1.2.3", "private", id="rfc1918-10"),
        pytest.param("172.16.0.1", "private", id="rfc1918-172"),
        pytest.param("192.168.1.1", "private", id="rfc1918-192"),
        pytest.param("169.254.169.254", "metadata", id="cloud-metadata"),
        pytest.param("fd00:ec2::254", "metadata", id="cloud-metadata-v6"),
        pytest.param("169.254.10.10", "link-local", id="link-local"),
        pytest.param("fe80::1", "link-local", id="link-local-v6"),
        pytest.param("100.64.0.1", "CGNAT", id="cgnat"),
        pytest.param("100.127.255.254", "CGNAT", id="cgnat-top"),
        pytest.param("224.0.0.1", "multicast", id="multicast"),
        pytest.param("ff02::1", "multicast", id="multicast-v6"),
        pytest.param("0.0.0.0", "unspecified", id="unspecified"),
        pytest.param("::", "unspecified", id="unspecified-v6"),
        pytest.param("240.0.0.1", "reserved", id="reserved"),
        pytest.param("255.255.255.255", "reserved", id="broadcast"),
        pytest.param("fc00::1", "private", id="unique-local"),
        pytest.param("fec0::1", "site-local", id="site-local"),
        pytest.param("192.0.2.10", "private", id="documentation"),
        pytest.param("::ffff:127.0.0.1", "loopback", id="v4-mapped-loopback"),
        pytest.param("::ffff:169.254.169.254", "metadata", id="v4-mapped-metadata"),
        pytest.param("::ffff:10.0.0.1", "private", id="v4-mapped-private"),
        pytest.param("64:ff9b::a00:1", "private", id="nat64-private"),
        pytest.param("2002:7f00:1::", "loopback", id="6to4-loopback"),
    ],
)
def test_non_public_addresses_are_forbidden_with_a_reason(address: str, reason: str) -> None:
    found = forbidden_reason(ipaddress.ip_address(address))
    assert found is not None and reason in found


@pytest.mark.parametrize(
    "address",
    [
        pytest.param(PUBLIC_V4, id="public-v4"),
        pytest.param("8.8.8.8", id="public-resolver"),
        pytest.param(PUBLIC_V6, id="public-v6"),
        pytest.param("::ffff:93.184.216.34", id="v4-mapped-public"),
    ],
)
def test_public_addresses_are_allowed(address: str) -> None:
    assert forbidden_reason(ipaddress.ip_address(address)) is None


@pytest.mark.parametrize(
    ("url", "message"),
    [
        pytest.param("ftp://example.com/x", "only http and https", id="ftp"),
        pytest.param("file:///etc/passwd", "only http and https", id="file"),
        pytest.param("gopher://x/", "only http and https", id="gopher"),
        pytest.param("https://user:pw@hooks.example.com/", "credentials", id="userinfo"),
        pytest.param("https://user@hooks.example.com/", "credentials", id="user-only"),
        pytest.param("https:///path", "no host", id="no-host"),
        pytest.param("https://hooks.example.com:99999/", "malformed", id="bad-port"),
        pytest.param("https://hooks.example.com/a b", "whitespace", id="space"),
        pytest.param("", "empty", id="empty"),
        pytest.param("http://[fe80::1%25eth0]/", "scoped", id="zone-id"),
    ],
)
@pytest.mark.parametrize("allow_private", [False, True], ids=["strict", "allow-private"])
def test_malformed_or_foreign_urls_are_refused_even_when_private_is_allowed(
    url: str, message: str, allow_private: bool
) -> None:
    with pytest.raises(DestinationRefused, match=message) as refused:
        check_destination(url, allow_private=allow_private)
    assert refused.value.permanent
    assert "pw" not in str(refused.value)


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("http://127.0.0.1:8080/hook", id="loopback"),
        pytest.param("http://[::1]/hook", id="loopback-v6"),
        pytest.param("http://169.254.169.254/latest/meta-data/", id="metadata"),
        pytest.param("http://[::ffff:7f00:1]/hook", id="v4-mapped-hex"),
        pytest.param("http://localhost:9000/hook", id="localhost-name"),
        pytest.param("http://2130706433/hook", id="decimal-ip"),
        pytest.param("http://0x7f.1/hook", id="hex-ip"),
        pytest.param("http://internal.example.test/hook", id="name-to-private"),
        pytest.param("http://mixed.example.test/hook", id="one-private-among-public"),
    ],
)
def test_private_destinations_are_refused_when_the_flag_is_off(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_dns(
        monkeypatch,
        {"internal.example.test": ["10.0.0.5"], "mixed.example.test": [PUBLIC_V4, "127.0.0.1"]},
    )
    with pytest.raises(DestinationRefused, match="public addresses"):
        check_destination(url, allow_private=False)


def test_a_public_name_is_accepted_with_every_address_it_resolves_to(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake_dns(monkeypatch, {"hooks.example.com": [PUBLIC_V4, PUBLIC_V6, PUBLIC_V4]})
    addresses = check_destination("https://hooks.example.com/cb", allow_private=False)
    assert addresses == [ipaddress.ip_address(PUBLIC_V4), ipaddress.ip_address(PUBLIC_V6)]


def test_a_name_that_does_not_resolve_is_refused_but_not_for_ever(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake_dns(monkeypatch, {"gone.example.com": []})
    with pytest.raises(DestinationRefused, match="does not resolve") as refused:
        check_destination("https://gone.example.com/cb", allow_private=False)
    assert not refused.value.permanent


def test_with_private_allowed_the_submit_check_resolves_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    looked_up = fake_dns(monkeypatch, {"dev.example.test": []})
    assert check_destination("http://dev.example.test:3000/hook", allow_private=True) == []
    assert check_destination("http://127.0.0.1:3000/hook", True) == [
        ipaddress.ip_address("127.0.0.1")
    ]
    assert looked_up == []


def test_the_send_time_check_resolves_even_when_private_is_allowed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake_dns(monkeypatch, {"dev.example.test": ["127.0.0.1"]})
    destination = resolve_destination("https://dev.example.test:8443/x", allow_private=True)
    assert destination.addresses == (ipaddress.ip_address("127.0.0.1"),)
    assert (destination.scheme, destination.host, destination.port) == (
        "https",
        "dev.example.test",
        8443,
    )
