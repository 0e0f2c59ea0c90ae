"""The sign-in routes' token buckets and whose address a request is counted against."""

from __future__ import annotations

import ipaddress

import pytest

from mfaplane_eventing.aggregate import Refusal, Rejected
from mfaplane_gateway.edge.rate_limits import Buckets, RouteLimit, TokenBucket, client_address

PROXIES = [ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("fd00::/8")]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def refusal(limit: RouteLimit, source: str) -> Rejected:
    with pytest.raises(Rejected) as refused:
        limit.admit(source)
    return refused.value


def test_a_bucket_gives_a_minutes_worth_at_once_then_refills_at_the_rate() -> None:
    bucket = TokenBucket.full(per_minute=6, now=0.0)
    for _ in range(6):
        assert bucket.wait(0.0) == 0
        bucket.take()
    assert bucket.wait(0.0) == pytest.approx(10.0)
    assert bucket.wait(4.0) == pytest.approx(6.0)
    assert bucket.wait(10.0) == 0
    bucket.take()
    assert bucket.wait(10.0) == pytest.approx(10.0)
    assert TokenBucket.full(6, 0.0).wait(3600.0) == 0 and TokenBucket.full(6, 0.0).tokens == 6  # never over full


def test_each_source_has_its_own_bucket_and_a_refusal_says_when_to_retry() -> None:
    clock = Clock()
    limit = RouteLimit(per_source_per_minute=2, overall_per_minute=100, clock=clock)
    limit.admit("198.51.100.7")
    limit.admit("198.51.100.7")
    refused = refusal(limit, "198.51.100.7")
    assert (refused.kind, refused.code, refused.extra) == (Refusal.THROTTLED, "rate_limited", {"retry_after": 30})
    limit.admit("198.51.100.8")  # another source is not held back
    clock.now += 30
    limit.admit("198.51.100.7")


def test_the_overall_bucket_holds_every_source_together_and_a_refusal_takes_no_token() -> None:
    clock = Clock()
    limit = RouteLimit(per_source_per_minute=2, overall_per_minute=3, clock=clock)
    limit.admit("a")
    limit.admit("a")
    assert refusal(limit, "a").extra == {"retry_after": 30}  # its own bucket is empty, the overall one is not
    limit.admit("b")  # so the refusal took none of the overall bucket's last token
    assert refusal(limit, "c").extra == {"retry_after": 20}  # now the overall one is empty, for everyone
    clock.now += 20
    limit.admit("c")


def test_the_least_recently_used_bucket_is_forgotten_first() -> None:
    buckets = Buckets(per_minute=1, max_sources=2)
    buckets.of("a", 0.0).take()
    buckets.of("b", 0.0).take()
    buckets.of("a", 0.0)
    buckets.of("c", 0.0)  # "b" goes
    assert buckets.of("a", 0.0).wait(0.0) > 0
    assert buckets.of("b", 0.0).wait(0.0) == 0


@pytest.mark.parametrize(("peer", "forwarded_for", "source"), [
    ("203.0.113.9", [], "203.0.113.9"),
    ("203.0.113.9", ["198.51.100.1"], "203.0.113.9"),  # an untrusted peer's header is ignored
    ("10.1.2.3", ["198.51.100.1"], "198.51.100.1"),  # behind a trusted proxy: the hop it appended
    ("10.1.2.3", ["1.2.3.4, 198.51.100.1"], "198.51.100.1"),  # what the client wrote itself is left of it
    ("10.1.2.3", ["1.2.3.4, 198.51.100.1, 10.9.9.9"], "198.51.100.1"),  # through two trusted proxies
    ("10.1.2.3", ["1.2.3.4", "198.51.100.1"], "198.51.100.1"),  # two headers: one list, in order
    ("10.1.2.3", ["10.4.4.4, 10.5.5.5"], "10.4.4.4"),  # trusted all the way: the first hop
    ("10.1.2.3", [], "10.1.2.3"),
    ("10.1.2.3", ["1.2.3.4, not-an-address"], "10.1.2.3"),  # garbage stops the walk at the proxy
    ("10.1.2.3", ["198.51.100.1:4711"], "198.51.100.1"),
    ("10.1.2.3", ["[2001:db8:1:2:3::4]:443"], "2001:db8:1:2::/64"),
    ("2001:db8:1:2:aaaa::1", [], "2001:db8:1:2::/64"),  # IPv6 per /64
    ("::ffff:203.0.113.9", [], "203.0.113.9"),
    ("fd00::1", ["2001:db8:5::9"], "2001:db8:5::/64"),
])
def test_the_client_address_is_the_peer_or_the_rightmost_hop_no_trusted_proxy_added(
        peer: str, forwarded_for: list[str], source: str) -> None:
    assert client_address(peer, forwarded_for, PROXIES) == source
