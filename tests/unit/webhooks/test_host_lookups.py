"""`HostLookups`: one lookup per host while the answer is fresh, refusals remembered too."""

from __future__ import annotations

import ipaddress

import pytest

from core.webhooks.ssrf import (
    DestinationRefused,
    HostLookups,
    IPAddress,
    check_destination,
    destination_host,
)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class CountingResolver:
    def __init__(self, answers: dict[str, list[str]]) -> None:
        self.answers = answers
        self.calls: list[str] = []

    def __call__(self, host: str, port: int) -> list[IPAddress]:
        self.calls.append(host)
        if not self.answers.get(host):
            raise DestinationRefused(f"the host {host!r} does not resolve", permanent=False)
        return [ipaddress.ip_address(a) for a in self.answers[host]]


def test_a_host_is_looked_up_once_while_its_answer_is_fresh() -> None:
    clock, resolver = Clock(), CountingResolver({"a.example": ["93.184.216.34"]})
    lookups = HostLookups(30.0, lookup=resolver, clock=clock)

    for port in (443, 80, 8443):
        assert lookups.addresses("a.example", port) == [ipaddress.ip_address("93.184.216.34")]
    clock.now = 29.9
    lookups.addresses("a.example", 443)
    assert resolver.calls == ["a.example"]

    clock.now = 30.0
    lookups.addresses("a.example", 443)
    assert resolver.calls == ["a.example", "a.example"]


def test_a_name_that_does_not_resolve_is_remembered_as_such() -> None:
    resolver = CountingResolver({})
    lookups = HostLookups(30.0, lookup=resolver, clock=Clock())

    for _ in range(3):
        with pytest.raises(DestinationRefused, match="does not resolve"):
            lookups.addresses("nowhere.example", 443)

    assert resolver.calls == ["nowhere.example"]


def test_the_cache_forgets_hosts_beyond_max_hosts() -> None:
    resolver = CountingResolver({f"h{n}.example": ["93.184.216.34"] for n in range(10)})
    lookups = HostLookups(30.0, max_hosts=4, lookup=resolver, clock=Clock())

    for n in range(10):
        lookups.addresses(f"h{n}.example", 443)
    lookups.addresses("h0.example", 443)

    assert resolver.calls.count("h0.example") == 2


def test_urls_of_one_host_share_its_lookup() -> None:
    resolver = CountingResolver({"hooks.example": ["93.184.216.34"]})
    lookups = HostLookups(30.0, lookup=resolver, clock=Clock())

    for path in ("/a", "/b", ":8443/c"):
        check_destination(f"https://hooks.example{path}", False, lookup=lookups.addresses)

    assert resolver.calls == ["hooks.example"]


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://hooks.example/x", ("hooks.example", 443)),
        ("http://hooks.example:8080/", ("hooks.example", 8080)),
        ("https://93.184.216.34/", None),
        ("ftp://hooks.example/", None),
        ("https://user:pw@hooks.example/", None),
    ],
)
def test_destination_host_names_what_would_be_looked_up(
    url: str, expected: tuple[str, int] | None
) -> None:
    assert destination_host(url) == expected
